"""The time-stepped engine: one loop for every model and rule.

``Simulator(model, rule, monitors).run(x, target, loss)`` steps the model's
pure step function over ``x [T, B, n_in]`` (a feed-forward model also takes
``x [B, n_in]``: one step), lets the rule update its traces after each step,
records what the monitors ask for, and lets the rule write its gradient
estimate at the end.  The loop keeps the hot path lean: the feed-forward
input drive is one matmul per chunk of steps, sequences are split with
``unbind`` (one stack in backward, not a full-size scatter per step), and
outputs are stacked once.  When nothing needs per-step quantities the model
cannot give for a whole run (a rule that reads only the outputs, such as
BPTT, or none; monitors the model can fill), a model's fused multi-step path
runs the whole sequence instead — the fused LIF node under autograd, the
compiled CUBA loop on the CPU; ``fast=False`` keeps the step-by-step
reference path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch

from .. import _checks
from ..losses import MSE, TimeLocalLoss
from ..models.base import DRIVE_CHUNK, Model, drive
from ..rules.base import Rule
from .monitors import Monitor, Record, Recorder, as_monitors

LossFn = Callable[[torch.Tensor, Any], torch.Tensor]


@dataclass
class Result:
    """Outputs ``[T, B, K]`` (``[B, K]`` for a single feed-forward step), loss, record, final state."""

    outputs: torch.Tensor
    loss: torch.Tensor | None
    record: Record
    state: Any = None


class Simulator:
    """Steps ``model`` with ``rule`` attached and ``monitors`` recording.

    ``fast``: allow the model's fused or compiled multi-step path when the run
    needs nothing else per step (it equals the step-by-step path, which
    ``fast=False`` forces).
    """

    def __init__(self, model: Model, rule: Rule | None = None,
                 monitors: Iterable[str | Monitor] | str | None = (), fast: bool = True) -> None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be a creditlab model (cl.models.*), got {type(model).__name__}")
        if rule is not None and not isinstance(rule, Rule):
            raise TypeError(f"rule must be a creditlab rule (cl.rules.*) or None, got {type(rule).__name__}")
        self.model = model
        self.rule = rule
        self.monitors = as_monitors(monitors)
        if not isinstance(fast, bool):
            raise TypeError(f"fast must be True or False, got {fast!r}")
        self.fast = fast
        if rule is not None:
            rule.attach(model)

    @property
    def dt(self) -> float:
        return self.model.dt

    def _prepare_input(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        single = self.model.kind == "feedforward" and isinstance(x, torch.Tensor) and x.dim() == 2
        if single:
            # finiteness is checked once, by check_input, on the [1, B, n_in] view
            _checks.tensor("x", x, rank=2, shape=(None, self.model.n_in), finite=False)
            x = x.unsqueeze(0)
        self.model.check_input(x)
        param = next(self.model.parameters(), None)
        if param is not None and (x.dtype != param.dtype or x.device != param.device):
            raise TypeError(f"x must have the model's dtype and device ({param.dtype}, {param.device}), "
                            f"got ({x.dtype}, {x.device}); convert x with x.to(...) or the model with model.to(...)")
        return x, single

    def run(self, x: torch.Tensor, target: Any = None, loss: LossFn | None = None,
            state: Any = None) -> Result:
        """Simulate ``x`` and, with a rule and a target, leave the rule's estimate in ``p.grad``.

        ``loss(outputs, target) -> scalar``; the default is mean squared error over all
        steps.  ``state`` continues from a previous ``Result.state``.
        """
        x, single = self._prepare_input(x)
        loss_fn = MSE() if loss is None else loss
        if not callable(loss_fn):
            raise TypeError(f"loss must be callable as loss(outputs, target), got {type(loss).__name__}")
        n_steps, batch = x.shape[0], x.shape[1]
        out_shape = (batch, self.model.n_out) if single else (n_steps, batch, self.model.n_out)
        if target is not None and isinstance(loss_fn, TimeLocalLoss):
            loss_fn.check_target(out_shape, target)
        rule = self.rule
        grad = self._records_graph()
        with torch.set_grad_enabled(grad):
            outputs, state, record = self._loop(x, target, loss_fn, state, single)
            outputs = outputs[0] if single else outputs
            value = None
            if target is not None:
                online = not grad and isinstance(loss_fn, TimeLocalLoss)
                value = loss_fn.evaluate(outputs, target) if online else loss_fn(outputs, target)
            if rule is not None:
                rule.end(outputs, target, value)
                outputs = outputs.detach()
                value = None if value is None else value.detach()
        return Result(outputs, value, record, state)

    def uses_fused_path(self, traces: bool = False) -> bool:
        """Whether a run takes the model's fused (or compiled) multi-step path instead of stepping."""
        rule = self.rule
        return (self.fast and (rule is None or rule.whole_sequence)
                and self.model.fused_available(traces, self._records_graph(), self.monitors))

    def _records_graph(self) -> bool:
        """Whether a run keeps the autograd graph: the rule decides, or the caller's grad mode without one."""
        return torch.is_grad_enabled() if self.rule is None else self.rule.uses_autograd

    def _loop(self, x: torch.Tensor, target: Any, loss_fn: LossFn, state: Any,
              single: bool) -> tuple[torch.Tensor, Any, Record]:
        model, rule = self.model, self.rule
        n_steps, batch = x.shape[0], x.shape[1]
        traces = rule is not None and rule.needs_presynaptic_traces
        fresh = model.init_state(batch, x.device, x.dtype, traces=traces)
        if state is None:
            state = fresh
        else:
            check_state(state, fresh)
        if rule is not None:
            rule.begin(model, x, target, loss_fn)
        if self.uses_fused_path(traces):
            outputs, state, recorded = model.run_fused(x, state, self.monitors)
            return outputs, state, Record(recorded, model.dt)
        recorder = Recorder(self.monitors, n_steps) if self.monitors else None
        wants_error = rule is not None and rule.needs_output_error and target is not None
        err_target = target[None] if single and wants_error else target
        outputs = OutputCollector(n_steps, batch, model.n_out, x)
        chunk = 1 if rule is not None and rule.direct else DRIVE_CHUNK
        for t, (x_t, i_t) in enumerate(drive(model, x, chunk)):
            noise = rule.perturbation(t, state) if rule is not None else None
            y, state, local = model.step(x_t, state, i_t, noise)
            outputs.add(t, y)
            if rule is not None:
                error = loss_fn.output_error(t, n_steps, y.detach(), err_target) if wants_error else None
                rule.step(t, local, y, error)
            if recorder is not None:
                recorder.record(t, local, y, rule.traces() if rule is not None else {})
        record = recorder.result(model.dt) if recorder is not None else Record({}, model.dt)
        return outputs.result(), state, record


class OutputCollector:
    """Outputs of a run: a list stacked once under autograd, else one preallocated buffer.

    Without a graph, a buffer keeps memory at T·B·K numbers instead of T
    retained tensor objects, which matters for 10 000-step online runs.
    """

    def __init__(self, n_steps: int, batch: int, n_out: int, like: torch.Tensor) -> None:
        self._grad = torch.is_grad_enabled()
        self._items: list[torch.Tensor] = []
        self._buffer = None if self._grad else like.new_empty(n_steps, batch, n_out)

    def add(self, t: int, y: torch.Tensor) -> None:
        if self._buffer is None:
            self._items.append(y)
        else:
            self._buffer[t] = y

    def result(self) -> torch.Tensor:
        return torch.stack(self._items) if self._buffer is None else self._buffer


def check_state(state: Any, expected: Any, name: str = "state") -> None:
    """Raise a clear error when ``state`` cannot continue a run whose fresh state is ``expected``.

    Tensors must match in shape (batch size and units); state tuples must be
    of the same type.  A trace the fresh state lacks (``None``) is not checked.
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(state, torch.Tensor):
            raise TypeError(f"{name} must be a tensor of shape {tuple(expected.shape)}, got {type(state).__name__}; "
                            "pass the state of a previous Result of this model")
        if state.shape != expected.shape:
            raise ValueError(f"{name} must have shape {tuple(expected.shape)} for this model and batch size, "
                             f"got {tuple(state.shape)}")
    elif isinstance(expected, tuple):
        if type(state) is not type(expected) or len(state) != len(expected):
            raise TypeError(f"{name} must be a {type(expected).__name__} of length {len(expected)} "
                            f"(the state of a previous Result of this model), got {type(state).__name__}")
        fields = getattr(expected, "_fields", None)
        for index, (part, want) in enumerate(zip(state, expected)):
            check_state(part, want, f"{name}.{fields[index]}" if fields else f"{name}[{index}]")
