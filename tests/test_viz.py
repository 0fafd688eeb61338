"""creditlab.viz: every plot returns a Figure with the data drawn, and writes a PNG atomically."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import creditlab as cl
from creditlab import viz

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def history(n=10, quality="accuracy", cosine=False):
    rows = []
    for step in range(1, n + 1):
        row = {"step": step, "loss": 1.0 / step, quality: step / n, "seconds": 0.01}
        if cosine and step % 2 == 0:
            row["cosine"] = 0.5 + step / (4 * n)
        rows.append(row)
    return rows


def test_raster_one_point_per_spike_coloured_by_population(tmp_path):
    gen = torch.Generator().manual_seed(0)
    spikes = torch.rand(100, 30, generator=gen) < 0.05
    fig = viz.raster(spikes, dt=1e-3, populations={"LIF": slice(0, 20), "ALIF": slice(20, 30)},
                     path=tmp_path / "raster.png")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    points = [c.get_offsets() for c in ax.collections]
    assert len(points) == 2
    assert sum(len(p) for p in points) == int(spikes.sum())
    assert len(points[1]) == int(spikes[:, 20:].sum())
    assert np.all(points[1][:, 1] >= 20)               # ALIF dots sit on ALIF rows
    t, n = np.nonzero(spikes.numpy())
    assert sorted(points[0][:, 0].tolist() + points[1][:, 0].tolist()) == pytest.approx(sorted((t + 1) * 1.0))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["LIF (20)", "ALIF (10)"]
    assert_png(tmp_path / "raster.png")


def test_raster_accepts_numpy_and_lif_populations():
    net = cl.models.LIF(n_in=2, n_rec=10, n_out=1, adaptive_fraction=0.3)
    assert viz.lif_populations(net) == {"LIF": slice(0, 7), "ALIF": slice(7, 10)}
    spikes = np.zeros((5, 10))
    spikes[2, 8] = 1
    fig = viz.raster(spikes, 1e-3, populations=viz.lif_populations(net))
    offsets = [c.get_offsets() for c in fig.axes[0].collections]
    assert [len(o) for o in offsets] == [0, 1]
    assert offsets[1][0].tolist() == [3.0, 8.0]


def test_traces_one_line_per_neuron_and_threshold(tmp_path):
    values = torch.randn(50, 3).cumsum(0)
    fig = viz.traces(values, dt=1e-3, labels=["a", "b", "c"], threshold=1.0, path=tmp_path / "v.png")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4                              # 3 traces + the threshold
    np.testing.assert_allclose(lines[1].get_ydata(), values[:, 1].numpy())
    np.testing.assert_allclose(lines[0].get_xdata(), np.arange(1, 51))
    assert_png(tmp_path / "v.png")
    assert len(viz.traces(np.arange(7.0), dt=2e-3).axes[0].get_lines()) == 1


def test_eligibility_under_pre_and_post_spikes(tmp_path):
    pre = torch.zeros(40)
    pre[[3, 10, 25]] = 1
    post = torch.zeros(40)
    post[[12, 30]] = 1
    trace = torch.linspace(0, 1, 40)
    fig = viz.eligibility(trace, pre, post, dt=1e-3, path=tmp_path / "e.png")
    ax_pre, ax_post, ax_e = fig.axes
    pre_events = ax_pre.collections[0].get_positions()
    post_events = ax_post.collections[0].get_positions()
    np.testing.assert_allclose(pre_events, [4.0, 11.0, 26.0])
    np.testing.assert_allclose(post_events, [13.0, 31.0])
    np.testing.assert_allclose(ax_e.get_lines()[0].get_ydata(), trace.numpy())
    assert_png(tmp_path / "e.png")


def test_learning_curve_from_history_and_from_file(tmp_path):
    rows = history()
    rows[4]["eval_loss"], rows[9]["eval_loss"] = 0.3, 0.1
    fig = viz.learning_curve(rows, path=tmp_path / "lc.png")
    loss_ax, acc_ax = fig.axes
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), [r["loss"] for r in rows])
    np.testing.assert_allclose(loss_ax.get_lines()[1].get_xdata(), [5, 10])
    assert acc_ax.get_ylabel() == "accuracy"
    assert_png(tmp_path / "lc.png")
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in history(quality="nmse")))
    for source in (metrics, tmp_path, str(metrics)):
        fig = viz.learning_curve(source)
        assert fig.axes[1].get_ylabel() == "nmse" and len(fig.axes[0].get_lines()[0].get_xdata()) == 10


def test_learning_curves_and_alignment_one_line_per_rule(tmp_path):
    runs = {"bptt": history(cosine=True), "e-prop": history(6, cosine=True)}
    fig = viz.learning_curves(runs, metric="accuracy", path=tmp_path / "curves.png")
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["bptt", "e-prop"]
    assert len(lines[1].get_xdata()) == 6
    assert_png(tmp_path / "curves.png")
    fig = viz.alignment(runs, path=tmp_path / "align.png")
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label() in runs]
    np.testing.assert_allclose(lines[0].get_xdata(), [2, 4, 6, 8, 10])
    np.testing.assert_allclose(lines[1].get_ydata(), [0.5 + s / 24 for s in (2, 4, 6)])
    assert_png(tmp_path / "align.png")


def test_plots_from_a_real_run(tmp_path):
    net = cl.models.LIF(n_in=3, n_rec=12, n_out=2, adaptive_fraction=0.5, seed=0, w_in_gain=4.0)
    x = (torch.rand(60, 2, 3, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    rec = cl.Simulator(net, monitors=("spikes", "v")).run(x).record
    fig = viz.raster(rec.spikes[:, 0], net.dt, populations=viz.lif_populations(net))
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == int(rec.spikes[:, 0].sum()) > 0
    viz.traces(rec.v[:, 0, :3], net.dt, threshold=net.v_th, path=tmp_path / "v.png")
    assert_png(tmp_path / "v.png")


@pytest.mark.parametrize("call, error, match", [
    (lambda: viz.raster(torch.zeros(5), 1e-3), ValueError, "spikes must have rank 2"),
    (lambda: viz.raster("spikes", 1e-3), TypeError, "spikes must be a torch.Tensor or numpy array"),
    (lambda: viz.raster(torch.zeros(5, 3), 0.0), ValueError, "dt"),
    (lambda: viz.raster(torch.zeros(5, 3), 1e-3, populations={"a": [5]}), ValueError, "outside 0..2"),
    (lambda: viz.raster(torch.zeros(0, 3), 1e-3), ValueError, "empty"),
    (lambda: viz.traces(torch.zeros(4, 2, 2), 1e-3), ValueError, "rank 1 or 2"),
    (lambda: viz.traces(torch.zeros(4, 2), 1e-3, labels=["a"]), ValueError, "labels"),
    (lambda: viz.eligibility(torch.zeros(5), torch.zeros(5), torch.zeros(4), 1e-3), ValueError, "same length"),
    (lambda: viz.learning_curve([]), ValueError, "empty"),
    (lambda: viz.learning_curve([{"loss": 1.0}]), ValueError, "'step'"),
    (lambda: viz.learning_curve(42), TypeError, "history"),
    (lambda: viz.alignment({"bptt": history()}), ValueError, "alignment_every"),
    (lambda: viz.learning_curves({}), TypeError, "non-empty dict"),
    (lambda: viz.learning_curve(history(), path="/no/such/dir/x.png"), ValueError, "does not exist"),
])
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_missing_metrics_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        viz.learning_curve(tmp_path)
    assert not os.listdir(tmp_path)
