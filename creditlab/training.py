"""The training loop: sample → simulate (the rule writes ``p.grad``) → optimizer step.

    history = cl.train(net, rule, task, steps=500, optimizer=opt, run_dir="runs/x")

Each step draws a batch from ``task``, runs ``Simulator(model, rule).run(x,
target=y, loss=task.loss)``, then ``optimizer.step(); optimizer.zero_grad()``.
The metrics of every step (loss, accuracy or nmse on the batch trained on,
seconds per step) form the returned history and, with a ``run_dir``, are
appended to ``run_dir/metrics.jsonl``.  A run directory also holds
``config.json`` (what was trained, so ``creditlab plot`` can work from the
directory alone) and ``checkpoint.pt`` — model, optimizer, the task's
generator, torch's RNG, the rule's state if it has one, and the step — written
atomically every ``checkpoint_every`` steps and at the end.  ``resume=True``
continues from that checkpoint; on CPU the result is bit-identical to a run
that was never interrupted, because every source of randomness the loop
touches is restored.
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from tqdm import tqdm

from . import _checks
from .models.base import Model
from .rules.alignment import alignment, exact_gradient
from .rules.base import Rule
from .simulator import Monitor, Simulator
from .simulator.monitors import Record
from .tasks.base import Task

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
#: checkpoint layout version, bumped when the stored fields change
CHECKPOINT_FORMAT = 1


class History(list):
    """The per-step metric dicts of a run; ``record`` holds the monitors of its last step."""

    def __init__(self, rows: Iterable[dict[str, Any]] = (), record: Record | None = None) -> None:
        super().__init__(rows)
        self.record = record

    def metric(self, name: str) -> tuple[list[int], list[float]]:
        """Steps and values of ``name`` over the rows that have it."""
        rows = [r for r in self if name in r]
        return [r["step"] for r in rows], [r[name] for r in rows]


# -- files -------------------------------------------------------------------------
def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, then rename it over ``path``.

    A crash leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda handle: handle.write(text.encode("utf-8")))


def read_metrics(path: str | os.PathLike) -> History:
    """Load a ``metrics.jsonl`` file (or the one inside a run directory) as a :class:`History`."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number} is not a JSON line: {exc.msg}") from None
    return History(rows)


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a run directory."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no {CONFIG}; is it a creditlab run directory?")
    return json.loads(path.read_text())


# -- checks ------------------------------------------------------------------------
def _check_optimizer(optimizer: Any, model: Model) -> torch.optim.Optimizer:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer (e.g. torch.optim.Adam(model.parameters())), "
                        f"got {type(optimizer).__name__}")
    own = {id(p) for p in model.parameters()}
    foreign = sum(id(p) not in own for group in optimizer.param_groups for p in group["params"])
    if foreign:
        raise ValueError(f"optimizer holds {foreign} tensor(s) that are not parameters of the model; "
                         "build it from model.parameters()")
    return optimizer


def _check_run_dir(run_dir: str | os.PathLike | None, resume: bool) -> Path | None:
    if run_dir is None:
        if resume:
            raise ValueError("resume=True needs a run_dir holding a checkpoint")
        return None
    if not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"run_dir must be a path (str or os.PathLike) or None, got {type(run_dir).__name__}")
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"run_dir {str(path)!r} exists and is not a directory")
    if resume:
        if not (path / CHECKPOINT).is_file():
            raise ValueError(f"resume=True but {str(path)!r} holds no {CHECKPOINT}; "
                             "start a fresh run with resume=False")
    elif (path / CHECKPOINT).exists() or (path / METRICS).exists():
        raise ValueError(f"run_dir {str(path)!r} already holds a run; pass resume=True to continue it "
                         "or choose an empty directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"run_dir {str(path)!r} cannot be created: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"run_dir {str(path)!r} is not writable")
    return path


def _optional_every(name: str, value: int | None) -> int | None:
    return None if value is None else _checks.positive_int(name, value)


# -- config and checkpoints ----------------------------------------------------------
def run_config(model: Model, rule: Rule, task: Task, optimizer: torch.optim.Optimizer,
               batch_size: int, model_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """What was trained, in JSON: enough to rebuild the model when ``model_kwargs`` is given."""
    if model_kwargs is not None:
        if not isinstance(model_kwargs, dict):
            raise TypeError(f"model_kwargs must be a dict of the model's constructor arguments, "
                            f"got {type(model_kwargs).__name__}")
        try:
            json.dumps(model_kwargs)
        except TypeError as exc:
            raise TypeError(f"model_kwargs must be JSON-serialisable: {exc}") from None
    return {
        "model": {"class": type(model).__name__, "module": type(model).__module__, "kwargs": model_kwargs},
        "rule": rule.name,
        "task": {"name": task.name, "class": type(task).__name__, "seed": task.seed},
        "optimizer": {"class": type(optimizer).__name__,
                      "lr": optimizer.param_groups[0].get("lr")},
        "batch_size": batch_size,
    }


def _check_same_run(stored: dict[str, Any], current: dict[str, Any], run_dir: Path) -> None:
    for key in ("model", "rule", "task"):
        a, b = stored.get(key), current.get(key)
        if key == "model":
            a, b = (a or {}).get("class"), b["class"]
        elif key == "task":
            a, b = (a or {}).get("name"), b["name"]
        if a != b:
            raise ValueError(f"cannot resume {str(run_dir)!r}: it trained {key} {a!r}, not {b!r}")


def _rule_state(rule: Rule) -> Any:
    state_dict = getattr(rule, "state_dict", None)
    return state_dict() if callable(state_dict) else None


def save_checkpoint(path: Path, step: int, model: Model, optimizer: torch.optim.Optimizer,
                    task: Task, rule: Rule, config: dict[str, Any]) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "task": task.state_dict(),
        "rule": _rule_state(rule),
        "torch_rng": torch.get_rng_state(),
        "config": config,
    }
    atomic_write_bytes(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train` (tensors mapped to CPU)."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a creditlab checkpoint (format {CHECKPOINT_FORMAT})")
    return payload


def _restore(payload: dict[str, Any], model: Model, optimizer: torch.optim.Optimizer,
             task: Task, rule: Rule) -> int:
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    task.load_state_dict(payload["task"])
    if payload["rule"] is not None:
        rule.load_state_dict(payload["rule"])
    torch.set_rng_state(payload["torch_rng"])
    return int(payload["step"])


def _rewind_metrics(path: Path, step: int) -> History:
    """Keep only the rows up to ``step``: later ones belong to steps that will be redone."""
    if not path.is_file():
        return History()
    rows = History(r for r in read_metrics(path) if r["step"] <= step)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


# -- the loop ----------------------------------------------------------------------
def _held_out_batch(task: Task, batch_size: int, model: Model) -> tuple[torch.Tensor, torch.Tensor]:
    """One fixed batch from a reseeded copy of ``task``: the training stream is left untouched."""
    held_out = copy.deepcopy(task)
    held_out.generator.manual_seed(task.seed + 1_000_003)
    return held_out.sample(batch_size, device=model.device, dtype=model.dtype)


def _evaluate(model: Model, task: Task, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    x, y = batch
    with torch.no_grad():
        outputs = Simulator(model).run(x).outputs
    return {f"eval_{k}": v for k, v in task.metrics(outputs, y).items()}


def update_alignment(model: Model, x: torch.Tensor, y: Any, loss: Any) -> dict[str, Any]:
    """Cosine of the update the rule just wrote into ``p.grad`` with the exact gradient on the same batch.

    Measured on the training step itself (not a second run of the rule), so
    stateful rules — adaptive feedback, reward baselines — are not advanced
    twice, and its cost is kept out of the step's time.
    """
    estimate = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    if not estimate:
        return {}
    exact = exact_gradient(model, x, y, loss)
    agreement = alignment(estimate, {n: exact[n] for n in estimate})
    return {"cosine": agreement.cosine, "cosine_per_parameter": dict(agreement.per_parameter)}


def train(model: Model, rule: Rule, task: Task, steps: int, optimizer: torch.optim.Optimizer | None = None,
          run_dir: str | os.PathLike | None = None, batch_size: int = 32, resume: bool = False,
          eval_every: int | None = None, checkpoint_every: int = 50, alignment_every: int | None = None,
          progress: bool = True, monitors: Iterable[str | Monitor] | str | None = (),
          model_kwargs: dict[str, Any] | None = None) -> History:
    """Train ``model`` with ``rule`` on ``task`` until ``steps`` optimizer steps are done.

    ``optimizer`` defaults to Adam(lr=1e-3).  ``eval_every`` adds ``eval_*``
    metrics (every ``eval_every`` steps and at the last) on one fixed held-out
    batch of ``batch_size`` trials, drawn from a reseeded copy of the task so
    the training stream is untouched.
    ``alignment_every`` adds ``cosine`` (and ``cosine_per_parameter``), the
    rule's alignment with the exact gradient on the step's batch, at step 1
    and every ``alignment_every`` steps.
    ``monitors`` are recorded on every step; the last step's record is
    ``history.record``.  ``model_kwargs`` (the model's constructor arguments)
    goes into ``config.json`` so the model can be rebuilt from the run
    directory.  With ``resume=True``, ``steps`` is the total to reach.
    """
    return prepare_training(model, rule, task, steps, optimizer, run_dir, batch_size, resume, eval_every,
                            checkpoint_every, alignment_every, progress, monitors, model_kwargs).execute()


@dataclass
class TrainingRun:
    """A validated training run (see :func:`train`); ``execute()`` trains and returns the history."""
    simulator: Simulator
    task: Task
    optimizer: torch.optim.Optimizer
    steps: int
    start: int
    batch_size: int
    path: Path | None
    config: dict[str, Any]
    history: History
    held_out: tuple[torch.Tensor, torch.Tensor] | None
    eval_every: int | None
    alignment_every: int | None
    checkpoint_every: int
    progress: bool

    def execute(self) -> History:
        model, rule, task, optimizer = self.simulator.model, self.simulator.rule, self.task, self.optimizer
        path, history, steps = self.path, self.history, self.steps
        metrics_file = open(path / METRICS, "a") if path is not None else None
        bar = tqdm(total=steps, initial=self.start, disable=not self.progress, desc=f"{rule.name} on {task.name}",
                   unit="step", dynamic_ncols=True)
        try:
            for step in range(self.start + 1, steps + 1):
                row = self._step(step)
                history.append(row)
                if metrics_file is not None:
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in row.items()
                                 if isinstance(v, float) and k not in ("step", "seconds")})
                if path is not None and (step % self.checkpoint_every == 0 or step == steps):
                    save_checkpoint(path / CHECKPOINT, step, model, optimizer, task, rule, self.config)
        finally:
            bar.close()
            if metrics_file is not None:
                metrics_file.close()
        return history

    def _step(self, step: int) -> dict[str, Any]:
        """One batch: run with the rule, optimizer step, metrics (and evaluation / alignment when due)."""
        model, task, optimizer = self.simulator.model, self.task, self.optimizer
        began = time.perf_counter()
        x, y = task.sample(self.batch_size, device=model.device, dtype=model.dtype)
        row: dict[str, Any] = {"step": step}
        result = self.simulator.run(x, target=y, loss=task.loss)
        seconds = time.perf_counter() - began
        if self.alignment_every is not None and (step % self.alignment_every == 0 or step == 1):
            row.update(update_alignment(model, x, y, task.loss))
        began = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad()
        row["seconds"] = seconds + time.perf_counter() - began
        row.update(task.metrics(result.outputs, y))
        if self.eval_every is not None and (step % self.eval_every == 0 or step == self.steps):
            row.update(_evaluate(model, task, self.held_out))
        self.history.record = result.record
        return row


def prepare_training(model: Model, rule: Rule, task: Task, steps: int,
                     optimizer: torch.optim.Optimizer | None = None, run_dir: str | os.PathLike | None = None,
                     batch_size: int = 32, resume: bool = False, eval_every: int | None = None,
                     checkpoint_every: int = 50, alignment_every: int | None = None, progress: bool = True,
                     monitors: Iterable[str | Monitor] | str | None = (),
                     model_kwargs: dict[str, Any] | None = None) -> TrainingRun:
    """Check :func:`train`'s arguments and set the run up (restoring a checkpoint when resuming).

    Every error about the arguments, the run directory or a checkpoint is
    raised here, before the first step; ``execute()`` on the result trains.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a creditlab model (cl.models.*), got {type(model).__name__}")
    if not isinstance(rule, Rule):
        raise TypeError(f"rule must be a creditlab rule (cl.rules.*), got {type(rule).__name__}")
    if not isinstance(task, Task):
        raise TypeError(f"task must be a creditlab task (cl.tasks.*), got {type(task).__name__}")
    _checks.positive_int("steps", steps)
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_int("checkpoint_every", checkpoint_every)
    eval_every = _optional_every("eval_every", eval_every)
    alignment_every = _optional_every("alignment_every", alignment_every)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3) if optimizer is None else optimizer
    _check_optimizer(optimizer, model)
    path = _check_run_dir(run_dir, bool(resume))
    config = run_config(model, rule, task, optimizer, batch_size, model_kwargs)

    simulator = Simulator(model, rule, monitors)
    held_out = _held_out_batch(task, batch_size, model) if eval_every is not None else None
    history, start = History(), 0
    if path is not None and resume:
        payload = load_checkpoint(path / CHECKPOINT)
        stored = read_config(path) if (path / CONFIG).is_file() else payload["config"]
        _check_same_run(stored, config, path)
        start = _restore(payload, model, optimizer, task, rule)
        history = _rewind_metrics(path / METRICS, start)
        kwargs = model_kwargs or (stored.get("model") or {}).get("kwargs")
        config = {**config, "model": {**config["model"], "kwargs": kwargs}}
    if path is not None:
        atomic_write_text(path / CONFIG, json.dumps({**config, "steps": steps}, indent=2) + "\n")
    return TrainingRun(simulator, task, optimizer, steps, start, batch_size, path, config, history, held_out,
                       eval_every, alignment_every, checkpoint_every, progress)
