"""The ``creditlab demo``: an LSNN learns evidence accumulation with surrogate gradients.

A network of 40 LIF and 40 adaptive (ALIF) neurons (Bellec et al. 2018,
"Long short-term memory and learning-to-learn in networks of spiking
neurons") is trained by BPTT through a triangle pseudo-derivative on a
shortened cue-accumulation task (Bellec et al. 2020, Fig. 3): five cues,
a 100 ms delay and a 150 ms recall window at dt = 5 ms, 200 steps a trial.
The delay is five membrane time constants long, so the decision has to be
carried by the slow adaptation of the ALIF neurons.

Held-out loss and accuracy are measured on the same 256 unseen trials before
and after training; the figures show one held-out trial of the trained net.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from . import _checks, viz
from .models import LIF
from .rules import SurrogateGradient
from .simulator import Simulator
from .tasks import EvidenceAccumulation
from .training import train


@dataclass(frozen=True)
class DemoSettings:
    """Hyperparameters of the demo (tuned to learn in a couple of minutes on two CPU cores)."""

    steps: int = 200
    batch_size: int = 32
    lr: float = 1e-2
    n_rec: int = 80
    adaptive_fraction: float = 0.5
    tau_a: float = 0.7          # s: longer than the cue-to-recall gap
    dt: float = 5e-3
    n_cues: int = 5
    delay: float = 0.1
    eval_trials: int = 256
    seed: int = 0


@dataclass
class DemoResult:
    settings: DemoSettings
    task: str
    model: str
    rule: str
    initial_loss: float
    final_loss: float
    initial_accuracy: float
    final_accuracy: float
    seconds_per_step: float
    firing_rate_hz: float
    files: dict[str, Path]


def build(settings: DemoSettings) -> tuple[LIF, EvidenceAccumulation]:
    task = EvidenceAccumulation(n_cues=settings.n_cues, delay=settings.delay, dt=settings.dt, seed=settings.seed)
    model = LIF(n_in=task.n_in, n_rec=settings.n_rec, n_out=task.n_out,
                adaptive_fraction=settings.adaptive_fraction, dt=settings.dt, tau_a=settings.tau_a,
                seed=settings.seed)
    return model, task


def _held_out(model: LIF, task: EvidenceAccumulation, trials: torch.Tensor, labels: torch.Tensor):
    with torch.no_grad():
        result = Simulator(model, monitors=("spikes", "v", "a")).run(trials)
    return task.metrics(result.outputs, labels), result.record


@contextmanager
def _single_thread() -> Iterator[None]:
    # An 80-neuron network's matrices are too small to gain from intra-op threads, and
    # on a busy machine the threads' spin-waiting costs more than ten times the work.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_demo(settings: DemoSettings = DemoSettings(), out: str | os.PathLike = "demo-output",
             progress: bool = True) -> DemoResult:
    """Train, evaluate and plot (on one CPU thread); figures go to ``out``."""
    _checks.positive_int("steps", settings.steps)
    with _single_thread():
        return _run(settings, Path(out), progress)


def _run(settings: DemoSettings, out: Path, progress: bool) -> DemoResult:
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    model, task = build(settings)
    held_out_task = EvidenceAccumulation(n_cues=settings.n_cues, delay=settings.delay, dt=settings.dt,
                                         seed=settings.seed + 1)
    trials, labels = held_out_task.sample(settings.eval_trials)
    before, _ = _held_out(model, task, trials, labels)

    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    began = time.perf_counter()
    history = train(model, SurrogateGradient(), task, steps=settings.steps, optimizer=optimizer,
                    batch_size=settings.batch_size, progress=progress)
    seconds_per_step = (time.perf_counter() - began) / settings.steps
    after, record = _held_out(model, task, trials, labels)

    spikes = record.spikes.float()
    firing_rate = float(spikes.mean()) / settings.dt
    files = _plots(model, task, history, record, out)
    return DemoResult(settings, f"{task.name} ({task.n_cues} cues, {task.n_steps} steps of {task.dt * 1e3:g} ms)",
                      f"LIF {model.n_rec - model.n_adaptive} + ALIF {model.n_adaptive}", "surrogate",
                      before["loss"], after["loss"], before["accuracy"], after["accuracy"],
                      seconds_per_step, firing_rate, files)


def _most_active(spikes: torch.Tensor, population: slice, count: int) -> list[int]:
    totals = spikes[:, population].sum(0)
    order = torch.argsort(totals, descending=True, stable=True)[:count]
    return sorted(int(j) + population.start for j in order)


def _plots(model: LIF, task: EvidenceAccumulation, history: list, record: Any, out: Path) -> dict[str, Path]:
    trial = 0
    pops = viz.lif_populations(model)
    spikes = record.spikes[:, trial].float()
    # the two busiest neurons of each population show the dynamics best
    shown = [j for pop in pops.values() for j in _most_active(spikes, pop, 2)]
    labels = [f"{'ALIF' if j >= model.n_rec - model.n_adaptive else 'LIF'} {j}" for j in shown]
    files = {
        "raster": out / "raster.png",
        "membrane": out / "membrane.png",
        "adaptation": out / "adaptation.png",
        "learning curve": out / "learning_curve.png",
    }
    viz.raster(record.spikes[:, trial], task.dt, populations=pops,
               title="held-out trial after training: LIF and ALIF spikes", path=files["raster"])
    viz.traces(record.v[:, trial, shown], task.dt, labels=labels, threshold=model.v_th,
               ylabel="membrane potential", title="membrane potential (threshold dashed)", path=files["membrane"])
    threshold = model.v_th + model.beta_vec[shown] * record.a[:, trial, shown]
    viz.traces(threshold, task.dt, labels=labels, ylabel="adaptive threshold A",
               title="adaptive threshold v_th + β·a", path=files["adaptation"])
    viz.learning_curve(history, title="surrogate-gradient training", path=files["learning curve"])
    return files


def format_table(result: DemoResult) -> str:
    """The results as an aligned two-column table."""
    rows = [
        ("task", result.task),
        ("model", result.model),
        ("rule", result.rule),
        ("steps", f"{result.settings.steps} (batch {result.settings.batch_size}, Adam lr {result.settings.lr:g})"),
        ("held-out loss", f"{result.initial_loss:.3f} -> {result.final_loss:.3f}"),
        ("held-out accuracy", f"{result.initial_accuracy:.1%} -> {result.final_accuracy:.1%} "
                              f"({result.settings.eval_trials} trials)"),
        ("time per step", f"{result.seconds_per_step * 1e3:.0f} ms"),
        ("firing rate", f"{result.firing_rate_hz:.1f} Hz"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


__all__ = ["DemoSettings", "DemoResult", "run_demo", "format_table", "build"]
