"""creditlab.viz inspection plots: what is drawn equals the quantity computed independently."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from creditlab import viz

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def random_spikes(shape, p=0.05, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < p


# -- PSTH ----------------------------------------------------------------------------
def test_psth_bars_are_counts_per_bin_per_neuron_and_trial(tmp_path):
    spikes = random_spikes((95, 3, 20), p=0.04)       # 95 steps: nine 10-step bins and one of 5
    dt, width = 1e-3, 10
    fig = viz.psth(spikes, dt=dt, bin=10e-3, path=tmp_path / "psth.png")
    assert isinstance(fig, Figure)
    assert_png(tmp_path / "psth.png")
    bars = fig.axes[0].patches
    assert len(bars) == 10
    z = spikes.numpy()
    for k, bar in enumerate(bars):
        start, stop = k * width, min((k + 1) * width, 95)
        count = sum(int(z[t, b, j]) for t in range(start, stop) for b in range(3) for j in range(20))
        expected = count / ((stop - start) * dt) / 20 / 3
        assert bar.get_height() == pytest.approx(expected)
        assert bar.get_x() == pytest.approx(start * dt * 1e3)
        assert bar.get_width() == pytest.approx((stop - start) * dt * 1e3)


def test_psth_of_one_trial_and_bad_bins():
    spikes = random_spikes((40, 10), p=0.1, seed=1)
    heights = [b.get_height() for b in viz.psth(spikes, dt=0.5e-3, bin=5e-3).axes[0].patches]
    expected = spikes.numpy().reshape(4, 10, 10).sum((1, 2)) / (5e-3 * 10)
    np.testing.assert_allclose(heights, expected)
    with pytest.raises(ValueError, match="bin must be a whole multiple of dt"):
        viz.psth(spikes, dt=1e-3, bin=2.5e-3)
    with pytest.raises(ValueError, match="spikes must have rank 2 or 3"):
        viz.psth(spikes[:, 0], dt=1e-3)


# -- ISI -----------------------------------------------------------------------------
def loop_isis(z: np.ndarray, dt: float) -> np.ndarray:
    out = []
    for b in range(z.shape[1]):
        for j in range(z.shape[2]):
            times = [t * dt for t in range(z.shape[0]) if z[t, b, j]]
            out += [later - earlier for earlier, later in zip(times, times[1:])]
    return np.array(out)


def test_isi_histogram_counts_equal_independent_intervals_and_cv_in_title(tmp_path):
    spikes = random_spikes((300, 4, 15), p=0.03, seed=2)
    dt = 1e-3
    isis = loop_isis(spikes.numpy(), dt)
    np.testing.assert_allclose(np.sort(viz.interspike_intervals(spikes, dt)), np.sort(isis))
    fig = viz.isi_histogram(spikes, dt, bins=25, path=tmp_path / "isi.png")
    assert_png(tmp_path / "isi.png")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    counts, edges = np.histogram(isis * 1e3, bins=25)
    np.testing.assert_array_equal(heights, counts)
    np.testing.assert_allclose([p.get_x() for p in ax.patches], edges[:-1])
    cv = float(re.search(r"CV = ([0-9.]+)", ax.get_title()).group(1))
    assert cv == pytest.approx(isis.std() / isis.mean(), abs=1e-3)
    assert 0.8 < cv < 1.1            # Bernoulli trains: geometric intervals, CV ≈ √(1 − p)


def test_isi_of_a_clock_has_cv_zero_and_silence_is_refused():
    spikes = torch.zeros(100, 2)
    spikes[::10] = 1
    title = viz.isi_histogram(spikes, dt=1e-3).axes[0].get_title()
    assert "CV = 0.000" in title and "mean 10.0 ms" in title
    one_spike = torch.zeros(50, 3)
    one_spike[5] = 1
    with pytest.raises(ValueError, match="no interspike interval"):
        viz.isi_histogram(one_spike, dt=1e-3)


# -- weights -------------------------------------------------------------------------
def test_weight_history_heatmap_is_the_fraction_per_bin_of_each_snapshot(tmp_path):
    gen = torch.Generator().manual_seed(3)
    snapshots = torch.stack([torch.randn(30, 20, generator=gen) * 0.1 + 0.05 * k for k in range(6)])
    times = np.array([0.0, 1.0, 2.0, 4.0, 8.0, 16.0])
    fig = viz.weight_history(snapshots, times, bins=16, path=tmp_path / "weights.png")
    assert_png(tmp_path / "weights.png")
    mesh = fig.axes[0].collections[0]
    drawn = np.asarray(mesh.get_array()).reshape(16, 6)
    w = snapshots.numpy().reshape(6, -1)
    edges = np.linspace(w.min(), w.max(), 17)
    expected = np.stack([np.histogram(row, edges)[0] / row.size for row in w])
    np.testing.assert_allclose(drawn, expected.T, rtol=1e-6)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), w.mean(1), rtol=1e-6)
    np.testing.assert_allclose(drawn.sum(0), 1.0)


def test_weight_history_takes_a_list_of_snapshots_of_any_size():
    snapshots = [np.array([0.0, 1.0]), np.array([0.0, 0.5, 1.0, 1.0])]
    fig = viz.weight_history(snapshots, bins=2)
    np.testing.assert_allclose(np.asarray(fig.axes[0].collections[0].get_array()).reshape(2, 2),
                               [[0.5, 0.25], [0.5, 0.75]])
    with pytest.raises(ValueError, match="times must give one time per snapshot"):
        viz.weight_history(snapshots, times=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        viz.weight_history(snapshots, times=[1.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        viz.weight_history([np.array([np.nan, 1.0])])


# -- PCA -----------------------------------------------------------------------------
def correlated_states(t=60, b=4, n=12, seed=4):
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(t, b, 3, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0],
                                                                                      dtype=torch.float64)
    mixing = torch.randn(3, n, generator=gen, dtype=torch.float64)
    return latent @ mixing + 0.1 * torch.randn(t, b, n, generator=gen, dtype=torch.float64)


def test_pca_explained_variance_and_projection_equal_numpy():
    states = correlated_states()
    projection, ratio, components = viz.pca(states, n_components=3)
    rows = states.numpy().reshape(-1, 12)
    centred = rows - rows.mean(0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(centred, rowvar=False))
    order = np.argsort(eigenvalues)[::-1]
    np.testing.assert_allclose(ratio, eigenvalues[order][:3] / eigenvalues.sum(), rtol=1e-9)
    for i in range(3):
        vector = eigenvectors[:, order[i]]
        sign = np.sign(vector[np.argmax(np.abs(vector))])
        np.testing.assert_allclose(components[i], sign * vector, atol=1e-9)
        np.testing.assert_allclose(projection[..., i].reshape(-1), centred @ (sign * vector), atol=1e-9)


def test_reservoir_pca_draws_each_trial_on_the_components(tmp_path):
    states = correlated_states()
    labels = torch.tensor([0, 1, 0, 2])
    fig = viz.reservoir_pca(states, labels=labels, path=tmp_path / "pca.png")
    assert_png(tmp_path / "pca.png")
    ax = fig.axes[0]
    projection, ratio, _ = viz.pca(states)
    assert len(ax.lines) == 4
    for b, line in enumerate(ax.lines):
        np.testing.assert_allclose(line.get_xdata(), projection[:, b, 0])
        np.testing.assert_allclose(line.get_ydata(), projection[:, b, 1])
    assert ax.lines[0].get_color() == ax.lines[2].get_color() != ax.lines[1].get_color()
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["class 0", "class 1", "class 2"]
    assert ax.get_xlabel() == f"PC1 ({100 * ratio[0]:.1f} % var.)"


def test_reservoir_pca_in_3d_and_bad_arguments(tmp_path):
    states = correlated_states(b=2)
    fig = viz.reservoir_pca(states[:, 0], n_components=3, path=tmp_path / "pca3.png")
    assert_png(tmp_path / "pca3.png")
    projection, _, _ = viz.pca(states[:, 0], 3)
    xs, ys, zs = fig.axes[0].lines[0].get_data_3d()
    np.testing.assert_allclose(np.stack([xs, ys, zs], 1), projection[:, 0])
    with pytest.raises(ValueError, match="n_components must be 2 or 3"):
        viz.reservoir_pca(states, n_components=4)
    with pytest.raises(ValueError, match="one label per trial"):
        viz.reservoir_pca(states, labels=[0, 1, 2])
    with pytest.raises(ValueError, match="do not vary"):
        viz.pca(torch.ones(10, 5))
