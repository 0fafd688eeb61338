"""Compare learning rules on the same task, seeds and model.

Every rule trains a freshly built model (same seed, same initial weights)
on the same task stream, in its own process so that peak memory is its own.
Reported per rule: the final metrics on a held-out batch, the mean cosine of
its update to the exact gradient over training (``cl.rules.alignment``),
time per training step, and the peak memory of one training step.

    runs = compare("add", ["bptt", "rtrl", "eprop", "rflo", "node-perturbation"], steps=200)
    print(table(runs))
"""
from __future__ import annotations

import concurrent.futures
import copy
import multiprocessing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from . import _checks
from .models import LIF, MLP, Model, RateRNN
from .profiling import PeakMemory
from .rules import RULES, Rule
from .simulator import Simulator
from .tasks import TASKS, Task

#: the ``--model`` choices and the kinds of model they build
MODELS = {"lif": "spiking", "alif": "spiking", "rate": "rate", "mlp": "feedforward"}


def build_task(name: str, seed: int) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}")
    return TASKS[name](seed=seed)


def build_rule(name: str) -> Rule:
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; choose from {', '.join(sorted(RULES))}")
    return RULES[name]()


def model_spec(name: str, task: Task, n_hidden: int, seed: int) -> tuple[type[Model], dict[str, Any]]:
    """The class and constructor arguments of the ``name`` model sized for ``task``."""
    _checks.choice("model", name, MODELS)
    if name == "mlp":
        return MLP, {"sizes": [task.n_in, n_hidden, n_hidden, task.n_out], "seed": seed}
    sizes = {"n_in": task.n_in, "n_rec": n_hidden, "n_out": task.n_out, "dt": task.dt, "seed": seed}
    if name == "rate":
        return RateRNN, sizes
    return LIF, {**sizes, "adaptive_fraction": 0.5 if name == "alif" else 0.0}


def choose_model(task: Task, rules: Sequence[str]) -> str:
    """The model every rule can train: an MLP for single-step tasks, else rate or ALIF."""
    kinds = [set(RULES[r].model_kinds) for r in rules]
    shared = set.intersection(*kinds) if kinds else set()
    preference = ["mlp"] if task.n_steps == 1 else ["rate", "alif"]
    for name in preference:
        if MODELS[name] in shared:
            return name
    trains = "; ".join(f"{r} trains {', '.join(RULES[r].model_kinds)}" for r in rules)
    raise ValueError(f"rules {', '.join(rules)} share no model for task {task.name!r} ({trains}); "
                     "compare them in separate groups or pass model=")


@dataclass
class RuleRun:
    """One rule's results in a comparison."""

    rule: str
    model: str
    metrics: dict[str, float]
    mean_cosine: float | None
    seconds_per_step: float
    peak_mib: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    cosine_per_parameter: dict[str, float] = field(default_factory=dict)


def step_memory(model: Model, rule_name: str, task: Task, batch_size: int) -> float | None:
    """Peak memory (MiB) of one training step, on a copy of the model and rule.

    Measured before training in a fresh process, after a one-trial warm-up,
    so the step's allocations are new pages rather than memory the allocator
    recycles from earlier steps.
    """
    probe, rule = copy.deepcopy(model), build_rule(rule_name)
    simulator = Simulator(probe, rule)
    simulator.run(*task.sample(1), loss=task.loss)
    x, y = task.sample(batch_size)
    with PeakMemory(x.device) as peak:
        simulator.run(x, target=y, loss=task.loss)
    return peak.mib


def run_rule(task_name: str, rule_name: str, model_name: str, steps: int, batch_size: int,
             lr: float, n_hidden: int, seed: int, align_every: int) -> RuleRun:
    """Train one rule and measure it (runs in the calling process)."""
    from .training import train

    torch.manual_seed(seed)
    task = build_task(task_name, seed)
    cls, kwargs = model_spec(model_name, task, n_hidden, seed)
    model = cls(**kwargs)
    rule = build_rule(rule_name)
    peak_mib = step_memory(model, rule_name, build_task(task_name, seed + 20_000), batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = train(model, rule, task, steps=steps, optimizer=optimizer, batch_size=batch_size,
                    alignment_every=align_every, progress=False)
    aligned = [row for row in history if row.get("cosine") is not None]
    per_parameter: dict[str, list[float]] = {}
    for row in aligned:
        for name, value in row.get("cosine_per_parameter", {}).items():
            per_parameter.setdefault(name, []).append(value)
    held_out = build_task(task_name, seed + 10_000)
    x, y = held_out.sample(max(batch_size, 64))
    with torch.no_grad():
        metrics = task.metrics(Simulator(model).run(x).outputs, y)
    return RuleRun(rule_name, model_name, metrics,
                   sum(r["cosine"] for r in aligned) / len(aligned) if aligned else None,
                   sum(r["seconds"] for r in history) / len(history), peak_mib,
                   [dict(row) for row in history], {n: sum(v) / len(v) for n, v in per_parameter.items()})


def compare(task: str, rules: Sequence[str], model: str | None = None, steps: int = 200,
            batch_size: int = 32, lr: float = 1e-3, n_hidden: int = 32, seed: int = 0,
            align_every: int = 10, isolate: bool = True) -> list[RuleRun]:
    """Train each rule on ``task`` from the same initial weights; one process per rule if ``isolate``."""
    task_obj = build_task(task, seed)
    if isinstance(rules, str) or not rules:
        raise ValueError("rules must be a non-empty list of rule names")
    for name in rules:
        build_rule(name)
    model = model or choose_model(task_obj, rules)
    _checks.choice("model", model, MODELS)
    for name in rules:
        if MODELS[model] not in RULES[name].model_kinds:
            raise ValueError(f"rule {name!r} cannot train a {model!r} model; it trains "
                             f"{', '.join(RULES[name].model_kinds)} models")
    _checks.positive_int("steps", steps)
    _checks.positive_int("align_every", align_every)
    args = [(task, name, model, steps, batch_size, lr, n_hidden, seed, align_every) for name in rules]
    if not isolate:
        return [run_rule(*a) for a in args]
    runs = []
    context = multiprocessing.get_context("spawn")
    for a in args:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            runs.append(pool.submit(run_rule, *a).result())
    return runs


def table(runs: Sequence[RuleRun]) -> str:
    """A markdown table of the comparison."""
    metric_names = sorted({k for r in runs for k in r.metrics})
    head = ["rule", "model", *metric_names, "mean cosine", "ms / step", "peak MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cells = [r.rule, r.model, *(f"{r.metrics.get(m, float('nan')):.4g}" for m in metric_names),
                 "—" if r.mean_cosine is None else f"{r.mean_cosine:.3f}",
                 f"{1e3 * r.seconds_per_step:.1f}", "—" if r.peak_mib is None else f"{r.peak_mib:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: Sequence[RuleRun], out_dir: str | Path) -> list[Path]:
    """Learning curves and alignment over training, one line per rule, as PNGs."""
    from . import viz

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    histories = {r.rule: r.history for r in runs}
    paths = [out / "learning_curves.png"]
    viz.learning_curves(histories, path=paths[0])
    aligned = {rule: rows for rule, rows in histories.items() if any("cosine" in row for row in rows)}
    if aligned:
        paths.append(out / "alignment.png")
        viz.alignment(aligned, path=paths[1])
    return paths


def as_json(runs: Sequence[RuleRun]) -> list[dict[str, Any]]:
    return [asdict(r) for r in runs]
