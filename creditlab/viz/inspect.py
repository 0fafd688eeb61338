"""Inspection plots of spiking runs: PSTH, ISI histogram, weight distributions over time, state PCA.

Same conventions as :mod:`creditlab.viz.plots`: tensors or numpy arrays in,
shapes checked, the matplotlib ``Figure`` returned, and with ``path=`` a PNG
written atomically.  Spike arrays are ``[T, N]`` (one trial) or
``[T, B, N]`` (B trials); step t covers the time ((t)·dt, (t+1)·dt].

- :func:`psth` — population rate per time bin, spikes / (bin · N · B) in Hz.
- :func:`isi_histogram` — interspike intervals within each neuron's train of
  each trial, with their coefficient of variation CV = SD / mean.
- :func:`weight_history` — the distribution of a weight tensor at each
  snapshot of a run (STDP, say) as a heatmap, plus first and last histograms.
- :func:`reservoir_pca` — state trajectories on their first principal
  components (SVD of the centred states), coloured by class label.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import _checks
from .plots import POPULATION_COLOURS, PathLike, _check_dt, _figure, _finish, as_array

CLASS_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
                 "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def _trials(name: str, value: Any) -> np.ndarray:
    """``[T, N]`` or ``[T, B, N]`` as ``[T, B, N]``."""
    array = as_array(name, value, (2, 3))
    return array[:, None] if array.ndim == 2 else array


# -- spikes ------------------------------------------------------------------------
def _bin_steps(bin: float, dt: float) -> int:
    bin = _checks.positive("bin", bin)
    steps = round(bin / dt)
    if steps < 1 or abs(bin / dt - steps) > 1e-6:
        raise ValueError(f"bin must be a whole multiple of dt={dt} s, got {bin} s")
    return steps


def psth(spikes: Any, dt: float, bin: float = 10e-3, title: str | None = None,
         path: PathLike | None = None) -> Figure:
    """Peri-stimulus time histogram of ``spikes [T, (B,) N]``: rate per neuron and trial in each bin.

    A bar's height is (spikes in the bin) / (bin duration · N · B) Hz; a last,
    shorter bin is divided by its own duration.
    """
    z = _trials("spikes", spikes)
    dt = _check_dt(dt)
    width = _bin_steps(bin, dt)
    n_steps, batch, n = z.shape
    per_step = z.sum(axis=(1, 2))
    starts = np.arange(0, n_steps, width)
    counts = np.add.reduceat(per_step, starts)
    durations = np.minimum(starts + width, n_steps) - starts
    rates = counts / (durations * dt * batch * n)
    fig = _figure((7, 3))
    ax = fig.subplots()
    ax.bar(starts * dt * 1e3, rates, width=durations * dt * 1e3, align="edge", color=POPULATION_COLOURS[0],
           edgecolor="white", linewidth=0.3)
    ax.set_xlim(0, n_steps * dt * 1e3)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("rate (Hz per neuron)")
    mean_rate = z.sum() / (n_steps * dt * batch * n)
    ax.set_title(title or f"PSTH: {n} neurons × {batch} trials, bin {width * dt * 1e3:g} ms, "
                          f"mean {mean_rate:.1f} Hz")
    return _finish(fig, path)


def interspike_intervals(spikes: Any, dt: float) -> np.ndarray:
    """Intervals (s) between consecutive spikes of each neuron in each trial of ``spikes [T, (B,) N]``."""
    z = _trials("spikes", spikes)
    dt = _check_dt(dt)
    train, step = np.nonzero(z.transpose(1, 2, 0).reshape(-1, z.shape[0]) > 0)   # sorted by train, then time
    same_train = train[1:] == train[:-1]
    return np.diff(step)[same_train] * dt


def isi_histogram(spikes: Any, dt: float, bins: int = 30, title: str | None = None,
                  path: PathLike | None = None) -> Figure:
    """Histogram of interspike intervals (ms) with their CV = SD / mean in the title.

    A Poisson train has CV ≈ 1, a regular (clock-like) train CV ≈ 0.
    """
    intervals = interspike_intervals(spikes, dt)
    _checks.positive_int("bins", bins)
    if intervals.size == 0:
        raise ValueError("spikes hold no neuron with two spikes in one trial: there is no interspike interval")
    cv = intervals.std() / intervals.mean()
    fig = _figure((6, 3.2))
    ax = fig.subplots()
    ax.hist(intervals * 1e3, bins=bins, color=POPULATION_COLOURS[0], edgecolor="white", linewidth=0.3)
    ax.set_xlabel("interspike interval (ms)")
    ax.set_ylabel("count")
    ax.set_title(title or f"ISIs: {intervals.size} intervals, mean {intervals.mean() * 1e3:.1f} ms, "
                          f"CV = {cv:.3f}")
    return _finish(fig, path)


# -- weights -----------------------------------------------------------------------
def _snapshots(weights: Any) -> list[np.ndarray]:
    if isinstance(weights, (list, tuple)):
        if not weights:
            raise ValueError("weights is empty: give at least one snapshot")
        return [as_array(f"weights[{k}]", w, tuple(range(0, 9))).reshape(-1) for k, w in enumerate(weights)]
    array = as_array("weights", weights, tuple(range(1, 10)))
    return list(array.reshape(array.shape[0], -1))


def _time_edges(times: np.ndarray) -> np.ndarray:
    """Cell edges around snapshot times: midpoints, half a gap beyond each end."""
    if times.size == 1:
        return np.array([times[0] - 0.5, times[0] + 0.5])
    mid = (times[1:] + times[:-1]) / 2
    return np.concatenate([[2 * times[0] - mid[0]], mid, [2 * times[-1] - mid[-1]]])


def weight_edges(snapshots: Sequence[np.ndarray], bins: int) -> np.ndarray:
    """``bins + 1`` shared bin edges spanning every snapshot's weights."""
    low = min(float(s.min()) for s in snapshots)
    high = max(float(s.max()) for s in snapshots)
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def weight_history(weights: Any, times: Any = None, bins: int = 40, time_label: str = "time (s)",
                   title: str | None = None, path: PathLike | None = None) -> Figure:
    """Distribution of weights over a run: ``weights [K, ...]`` or a list of K tensors.

    Left, a heatmap of the fraction of synapses in each weight bin at each of
    the K snapshots (taken at ``times [K]``, default 0..K−1) with the mean
    weight drawn over it; right, the first and last snapshots' histograms.
    """
    snapshots = _snapshots(weights)
    if any(s.size == 0 for s in snapshots):
        raise ValueError("every weight snapshot must hold at least one weight")
    if not all(np.isfinite(s).all() for s in snapshots):
        raise ValueError("weights contain NaN or Inf values")
    _checks.positive_int("bins", bins)
    k = len(snapshots)
    if times is None:
        times, time_label = np.arange(k, dtype=float), "snapshot"
    else:
        times = as_array("times", times, 1).astype(float)
        if times.size != k:
            raise ValueError(f"times must give one time per snapshot ({k}), got {times.size}")
        if k > 1 and not (np.diff(times) > 0).all():
            raise ValueError("times must be strictly increasing")
    edges = weight_edges(snapshots, bins)
    fractions = np.stack([np.histogram(s, edges)[0] / s.size for s in snapshots])    # [K, bins]
    fig = _figure((9, 3.5))
    ax_map, ax_hist = fig.subplots(1, 2, gridspec_kw={"width_ratios": (3, 2)})
    mesh = ax_map.pcolormesh(_time_edges(times), edges, fractions.T, cmap="viridis", shading="flat")
    fig.colorbar(mesh, ax=ax_map, label="fraction of synapses")
    ax_map.plot(times, [s.mean() for s in snapshots], c="white", lw=1.0, label="mean")
    ax_map.set_xlabel(time_label)
    ax_map.set_ylabel("weight")
    ax_map.legend(fontsize=8, loc="upper right")
    for index, label, colour in ((0, "first", "tab:blue"), (k - 1, "last", "tab:red")):
        ax_hist.stairs(fractions[index], edges, color=colour, label=f"{label} ({times[index]:g})")
    ax_hist.set_xlabel("weight")
    ax_hist.set_ylabel("fraction of synapses")
    ax_hist.legend(fontsize=8)
    ax_map.set_title(title or f"weight distribution over {k} snapshots ({snapshots[-1].size} weights)")
    return _finish(fig, path)


# -- states ------------------------------------------------------------------------
def pca(states: Any, n_components: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal components of ``states [T, (B,) N]``, pooled over steps and trials.

    Returns the projections ``[T, B, k]``, the explained-variance ratios
    ``[k]`` (σ_i² / Σσ²) and the components ``[k, N]`` from the SVD of the
    centred states, each component signed so its largest loading is positive.
    """
    array = _trials("states", states)
    n_steps, batch, n = array.shape
    _checks.positive_int("n_components", n_components)
    if n_components > min(n, n_steps * batch):
        raise ValueError(f"n_components must be at most min(N, T·B) = {min(n, n_steps * batch)}, "
                         f"got {n_components}")
    rows = torch.as_tensor(array.reshape(-1, n), dtype=torch.float64)
    if not bool(torch.isfinite(rows).all()):
        raise ValueError("states contain NaN or Inf values")
    centred = rows - rows.mean(0)
    _, sigma, vh = torch.linalg.svd(centred, full_matrices=False)
    total = float((sigma ** 2).sum())
    if total == 0:
        raise ValueError("states do not vary (every state is the same): there is no principal component")
    components = vh[:n_components]
    largest = components.gather(1, components.abs().argmax(1, keepdim=True))
    components = components * torch.sign(largest)
    projection = (centred @ components.t()).reshape(n_steps, batch, n_components)
    ratio = (sigma[:n_components] ** 2) / total
    return projection.numpy(), ratio.numpy(), components.numpy()


def _labels(labels: Any, batch: int) -> np.ndarray | None:
    if labels is None:
        return None
    array = as_array("labels", labels, 1)
    if array.size != batch:
        raise ValueError(f"labels must give one label per trial ({batch}), got {array.size}")
    if not np.all(array == np.round(array)):
        raise ValueError("labels must be integer class labels")
    return array.astype(int)


def reservoir_pca(states: Any, labels: Any = None, n_components: int = 2, title: str | None = None,
                  path: PathLike | None = None) -> Figure:
    """Trajectories of ``states [T, (B,) N]`` on their first 2 or 3 principal components.

    One line per trial, coloured by ``labels [B]`` when given, a dot at its
    start; axis labels give each component's share of the variance.
    """
    if isinstance(n_components, bool) or n_components not in (2, 3):
        raise ValueError(f"n_components must be 2 or 3, got {n_components!r}")
    projection, ratio, _ = pca(states, n_components)
    batch = projection.shape[1]
    classes = _labels(labels, batch)
    fig = _figure((5.5, 4.5))
    ax = fig.add_subplot(projection="3d" if n_components == 3 else None)
    seen: set[int] = set()
    for b in range(batch):
        label = None if classes is None else int(classes[b])
        colour = CLASS_COLOURS[0] if label is None else CLASS_COLOURS[label % len(CLASS_COLOURS)]
        legend = None if label is None or label in seen else f"class {label}"
        if label is not None:
            seen.add(label)
        trajectory = projection[:, b].T
        ax.plot(*trajectory, c=colour, lw=0.8, alpha=0.6, label=legend)
        ax.scatter(*trajectory[:, :1], c=colour, s=10)
    axis_setters = (ax.set_xlabel, ax.set_ylabel) + ((ax.set_zlabel,) if n_components == 3 else ())
    for i, set_label in enumerate(axis_setters):
        set_label(f"PC{i + 1} ({100 * ratio[i]:.1f} % var.)")
    if classes is not None:
        handles, names = ax.get_legend_handles_labels()
        order = sorted(range(len(names)), key=lambda i: int(names[i].split()[-1]))
        ax.legend([handles[i] for i in order], [names[i] for i in order], fontsize=8)
    ax.set_title(title or f"state PCA: {batch} trial(s), {projection.shape[0]} steps, "
                          f"{100 * ratio.sum():.1f} % of variance")
    return _finish(fig, path)


__all__ = ["psth", "isi_histogram", "interspike_intervals", "weight_history", "weight_edges",
           "pca", "reservoir_pca"]
