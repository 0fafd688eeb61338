"""Plots of runs: spike rasters, state traces, eligibility traces, learning and alignment curves.

Every function accepts torch tensors or numpy arrays, checks their shapes,
returns the matplotlib ``Figure`` and, given ``path=``, also writes a PNG
atomically (temp file beside it, then rename).  Figures are drawn on an Agg
canvas outside pyplot: plotting works without a display, leaves the user's
backend alone, and a figure is freed as soon as it is no longer referenced.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import _checks
from ..training import atomic_write_bytes, read_metrics

PathLike = str | os.PathLike
#: a learning history: the list ``cl.train`` returns or a metrics.jsonl path / run directory
HistoryLike = Sequence[Mapping[str, Any]] | PathLike
POPULATION_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


# -- inputs ----------------------------------------------------------------------
def as_array(name: str, value: Any, rank: int | tuple[int, ...]) -> np.ndarray:
    """``value`` (tensor, array or nested list) as a float numpy array of the given rank(s)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.float() if value.dtype in (torch.bool, torch.bfloat16, torch.float16) else value
        array = value.numpy()
    elif isinstance(value, (np.ndarray, list, tuple)):
        array = np.asarray(value)
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(value).__name__}")
    ranks = (rank,) if isinstance(rank, int) else rank
    if array.ndim not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{name} must have rank {want}, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if array.dtype == bool:
        array = array.astype(np.float64)
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array


def as_history(name: str, history: HistoryLike) -> list[Mapping[str, Any]]:
    """A list of metric rows from a history list, a metrics.jsonl path or a run directory."""
    if isinstance(history, (str, os.PathLike)):
        return list(read_metrics(history))
    if isinstance(history, Sequence) and all(isinstance(r, Mapping) for r in history):
        if not history:
            raise ValueError(f"{name} is empty: nothing was trained")
        if any("step" not in r for r in history):
            raise ValueError(f"every row of {name} needs a 'step' entry, as cl.train writes")
        return list(history)
    raise TypeError(f"{name} must be a history (list of metric dicts from cl.train) or a metrics.jsonl path, "
                    f"got {type(history).__name__}")


def _series(rows: list[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    kept = [r for r in rows if key in r and r[key] is not None]
    return np.array([r["step"] for r in kept], dtype=float), np.array([r[key] for r in kept], dtype=float)


def _figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: PathLike | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path or None, got {type(path).__name__}")
        target = Path(path)
        if not target.parent.is_dir():
            raise ValueError(f"path {str(target)!r}: directory {str(target.parent)!r} does not exist")
        atomic_write_bytes(target, lambda handle: fig.savefig(handle, format="png", dpi=110))
    return fig


def _check_dt(dt: float) -> float:
    return _checks.positive("dt", dt)


# -- spikes and states -----------------------------------------------------------
def _population_indices(populations: Mapping[str, Any] | None, n: int) -> list[tuple[str, np.ndarray]]:
    if populations is None:
        return [("neurons", np.arange(n))]
    if not isinstance(populations, Mapping) or not populations:
        raise TypeError("populations must be a non-empty dict {label: slice or sequence of neuron indices}")
    out = []
    for label, index in populations.items():
        idx = np.arange(n)[index] if isinstance(index, slice) else np.asarray(index, dtype=int).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"population {label!r} indexes neurons outside 0..{n - 1}")
        out.append((str(label), idx))
    return out


def lif_populations(model: Any) -> dict[str, slice]:
    """The LIF and ALIF populations of a :class:`~creditlab.models.LIF` (ALIF neurons come last)."""
    n_lif = model.n_rec - model.n_adaptive
    pops = {}
    if n_lif:
        pops["LIF"] = slice(0, n_lif)
    if model.n_adaptive:
        pops["ALIF"] = slice(n_lif, model.n_rec)
    return pops


def raster(spikes: Any, dt: float, populations: Mapping[str, Any] | None = None,
           title: str | None = None, path: PathLike | None = None, marker_size: float = 4.0) -> Figure:
    """Spike raster of ``spikes [T, N]``: one dot per spike, one colour per population.

    ``populations`` maps a label to a slice or index list of neurons, e.g.
    ``{"LIF": slice(0, 50), "ALIF": slice(50, 100)}`` (see :func:`lif_populations`).
    """
    array = as_array("spikes", spikes, 2)
    dt = _check_dt(dt)
    n_steps, n = array.shape
    fig = _figure((7, 3.5))
    ax = fig.subplots()
    for colour, (label, idx) in zip(_cycle(POPULATION_COLOURS), _population_indices(populations, n)):
        t, j = np.nonzero(array[:, idx] > 0)
        ax.scatter((t + 1) * dt * 1e3, idx[j], s=marker_size, c=colour, marker="|" if n > 200 else "o",
                   linewidths=0.8, label=f"{label} ({len(idx)})")
    ax.set_xlim(0, n_steps * dt * 1e3)
    ax.set_ylim(-0.5, n - 0.5)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("neuron")
    if populations is not None:
        ax.legend(loc="upper right", fontsize=8, markerscale=2)
    ax.set_title(title or f"spike raster: {int((array > 0).sum())} spikes")
    return _finish(fig, path)


def _cycle(items: Sequence[str]) -> Iterable[str]:
    while True:
        yield from items


def traces(values: Any, dt: float, labels: Sequence[str] | None = None, ylabel: str = "membrane potential",
           threshold: float | None = None, title: str | None = None, path: PathLike | None = None) -> Figure:
    """Time courses of ``values [T, N]`` (or ``[T]``): membrane, adaptation, rates, outputs.

    ``threshold`` draws a dashed horizontal line (the firing threshold, say).
    """
    array = as_array("values", values, (1, 2))
    array = array[:, None] if array.ndim == 1 else array
    dt = _check_dt(dt)
    n_steps, n = array.shape
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels must name each of the {n} traces, got {len(labels)}")
    time_ms = np.arange(1, n_steps + 1) * dt * 1e3
    fig = _figure((7, 3))
    ax = fig.subplots()
    for j in range(n):
        ax.plot(time_ms, array[:, j], lw=1.0, label=None if labels is None else labels[j])
    if threshold is not None:
        ax.axhline(threshold, ls="--", c="grey", lw=0.8)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel(ylabel)
    if labels is not None:
        ax.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def eligibility(trace: Any, pre_spikes: Any, post_spikes: Any, dt: float, title: str | None = None,
                path: PathLike | None = None) -> Figure:
    """One synapse's eligibility trace ``[T]`` under the pre- and postsynaptic spikes ``[T]`` that shaped it."""
    e = as_array("trace", trace, 1)
    pre = as_array("pre_spikes", pre_spikes, 1)
    post = as_array("post_spikes", post_spikes, 1)
    if not len(e) == len(pre) == len(post):
        raise ValueError(f"trace, pre_spikes and post_spikes must have the same length T, "
                         f"got {len(e)}, {len(pre)}, {len(post)}")
    dt = _check_dt(dt)
    time_ms = np.arange(1, len(e) + 1) * dt * 1e3
    fig = _figure((7, 4))
    ax_pre, ax_post, ax_e = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": (1, 1, 3)})
    for ax, spikes, label, colour in ((ax_pre, pre, "pre", "tab:blue"), (ax_post, post, "post", "tab:red")):
        ax.eventplot(time_ms[spikes > 0], colors=colour, lineoffsets=0.5, linelengths=0.8)
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
    ax_e.plot(time_ms, e, c="k", lw=1.2)
    ax_e.axhline(0, c="grey", lw=0.5)
    ax_e.set_ylabel("eligibility")
    ax_e.set_xlabel("time (ms)")
    ax_e.set_xlim(0, len(e) * dt * 1e3)
    ax_pre.set_title(title or "eligibility trace of one synapse")
    return _finish(fig, path)


# -- training curves -------------------------------------------------------------
def _quality_key(rows: list[Mapping[str, Any]]) -> str | None:
    for key in ("accuracy", "nmse"):
        if any(key in r for r in rows):
            return key
    return None


def learning_curve(history: HistoryLike, title: str | None = None, path: PathLike | None = None) -> Figure:
    """Loss (and accuracy or nmse, with held-out ``eval_*`` values when present) against step."""
    rows = as_history("history", history)
    quality = _quality_key(rows)
    fig = _figure((9 if quality else 5, 3.2))
    axes = fig.subplots(1, 2 if quality else 1, squeeze=False)
    panels = [("loss", axes[0, 0])] + ([(quality, axes[0, 1])] if quality else [])
    for key, ax in panels:
        steps, values = _series(rows, key)
        ax.plot(steps, values, lw=1.0, label="train batch")
        eval_steps, eval_values = _series(rows, f"eval_{key}")
        if len(eval_steps):
            ax.plot(eval_steps, eval_values, "o-", ms=3, lw=1.0, label="held out")
            ax.legend(fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        if key == "nmse" or (key == "loss" and len(values) and values.min() > 0 and values.max() / values.min() > 50):
            ax.set_yscale("log")
    axes[0, 0].set_title(title or "learning curve")
    return _finish(fig, path)


def _labelled_histories(name: str, histories: Mapping[str, HistoryLike]) -> dict[str, list[Mapping[str, Any]]]:
    if not isinstance(histories, Mapping) or not histories:
        raise TypeError(f"{name} must be a non-empty dict {{label: history or metrics.jsonl path}}")
    return {str(label): as_history(f"{name}[{label!r}]", h) for label, h in histories.items()}


def learning_curves(histories: Mapping[str, HistoryLike], metric: str = "loss", title: str | None = None,
                    path: PathLike | None = None) -> Figure:
    """One curve of ``metric`` per rule (or run) on shared axes: ``{label: history}``."""
    runs = _labelled_histories("histories", histories)
    fig = _figure((6, 3.5))
    ax = fig.subplots()
    for label, rows in runs.items():
        steps, values = _series(rows, metric)
        if not len(steps):
            raise ValueError(f"history {label!r} has no {metric!r} values; it has {sorted(rows[0])}")
        ax.plot(steps, values, lw=1.2, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.set_title(title or f"{metric} by rule")
    return _finish(fig, path)


def alignment(histories: Mapping[str, HistoryLike] | HistoryLike, title: str | None = None,
              path: PathLike | None = None) -> Figure:
    """Cosine of each rule's estimate with the exact gradient over training.

    ``histories`` is ``{rule: history}`` (or one history) from runs trained
    with ``alignment_every=``, whose rows carry ``"cosine"``.
    """
    runs = _labelled_histories("histories", histories if isinstance(histories, Mapping)
                               else {"rule": histories})
    fig = _figure((6, 3.5))
    ax = fig.subplots()
    for label, rows in runs.items():
        steps, cosines = _series(rows, "cosine")
        if not len(steps):
            raise ValueError(f"history {label!r} has no 'cosine' values; train with alignment_every=N")
        ax.plot(steps, cosines, "o-", ms=3, lw=1.2, label=label)
    ax.axhline(0, c="grey", lw=0.5)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("step")
    ax.set_ylabel("cosine with exact gradient")
    ax.legend(fontsize=8)
    ax.set_title(title or "alignment with the exact gradient")
    return _finish(fig, path)


__all__ = ["raster", "traces", "eligibility", "learning_curve", "learning_curves", "alignment",
           "lif_populations", "as_array"]
