"""The learning-rule protocol: eligibility-trace plug-ins for the engine.

A rule is driven by the simulator, never the other way round:

    rule.attach(model)            # once: refuses a model it cannot train
    rule.begin(model, x, target, loss)   # start of a run: reset traces
    noise = rule.perturbation(t, state)  # optional: perturb unit input
    rule.step(t, locals, y_t, error_t)   # every step: update traces
    rule.end(outputs, target, loss_value)  # write estimates into p.grad

Gradient-estimating rules *accumulate* into ``p.grad`` (as ``backward`` does),
so any ``torch.optim`` optimizer, clipping, AMP scaler or DDP all-reduce works
unchanged.  A rule's traces are named tensors (``traces()``) that monitors can
record like membrane potentials.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ..losses import TimeLocalLoss
from ..models.base import Model


#: every concrete rule by its CLI name (filled as rule classes are defined)
RULES: dict[str, type["Rule"]] = {}


class Rule:
    """Base class of every learning rule.

    A subclass that sets its own ``name`` is registered in :data:`RULES` under
    that name, which is how ``creditlab train --rule NAME`` finds it.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            RULES[cls.name] = cls

    #: short name used by the CLI and in tables
    name: str = "rule"
    #: model kinds this rule can train ("spiking", "rate", "feedforward")
    model_kinds: tuple[str, ...] = ("spiking", "rate", "feedforward")
    #: True when the simulator must keep the autograd graph over the run
    uses_autograd: bool = False
    #: True for direct plasticity (STDP): the rule changes the model's weights itself
    #: during the run and writes no ``p.grad``; the engine then projects the input
    #: with the current weights every step
    direct: bool = False
    #: True when the model must carry filtered presynaptic traces in its state
    needs_presynaptic_traces: bool = False
    #: True when the rule reads the per-step output error ∂ℓ_t/∂y_t
    needs_output_error: bool = False
    #: True when the rule reads nothing per step, only the outputs, so the engine may
    #: run a model's fused multi-step path (``Model.run_fused``) instead of stepping
    whole_sequence: bool = False
    #: names of the traces ``traces()`` returns
    trace_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.model: Model | None = None

    # -- protocol ----------------------------------------------------------------
    def attach(self, model: Model) -> None:
        """Bind to ``model``; raise ``TypeError`` naming why it cannot be trained."""
        if not isinstance(model, Model):
            raise TypeError(f"{type(self).__name__} needs a creditlab model, got {type(model).__name__}")
        if model.kind not in self.model_kinds:
            raise TypeError(
                f"{type(self).__name__} cannot train a {type(model).__name__} ({model.kind} model); "
                f"it trains {', '.join(self.model_kinds)} models{self.alternative_hint(model)}")
        self.model = model

    def alternative_hint(self, model: Model) -> str:
        """Advice appended to an ``attach`` refusal (e.g. which rule to use instead)."""
        return ""

    def begin(self, model: Model, x: torch.Tensor, target: Any, loss: Any) -> None:
        if self.needs_output_error and target is not None and not isinstance(loss, TimeLocalLoss):
            raise TypeError(
                f"{type(self).__name__} learns online and needs a loss that is a sum over time steps "
                f"(a creditlab.losses.TimeLocalLoss such as task.loss or losses.MSE()), got {type(loss).__name__}")

    def perturbation(self, t: int, state: Any) -> torch.Tensor | None:
        return None

    def step(self, t: int, local: NamedTuple, y_t: torch.Tensor, error_t: torch.Tensor | None) -> None:
        """Update traces after step ``t``; ``error_t`` is ∂ℓ_t/∂y_t when requested."""

    def end(self, outputs: torch.Tensor, target: Any, loss: torch.Tensor | None) -> None:
        """Write the run's gradient estimate into ``p.grad``."""

    def traces(self) -> dict[str, torch.Tensor]:
        """The rule's current named traces (for monitors)."""
        return {}


def accumulate_grad(param: torch.nn.Parameter, estimate: torch.Tensor, owned: bool = False) -> None:
    """Add ``estimate`` into ``param.grad`` the way ``backward`` accumulates.

    ``owned=True``: ``estimate`` is a fresh tensor the caller hands over, so an
    empty ``param.grad`` takes it without a copy.
    """
    # each conversion only when needed: a no-op .detach/.to/.reshape still costs a
    # tensor object, ~2 µs each, which is felt in a small net's per-batch budget
    if estimate.requires_grad:
        estimate = estimate.detach()
    if estimate.dtype != param.dtype:
        estimate = estimate.to(param.dtype)
    if estimate.shape != param.shape:
        estimate = estimate.reshape(param.shape)
    if param.grad is None:
        param.grad = estimate if owned else estimate.clone()
    else:
        param.grad.add_(estimate)


class Alignment(NamedTuple):
    """Agreement of an estimate with the exact gradient on the same batch."""
    cosine: float
    angle_deg: float
    per_parameter: dict[str, float]   # cosine per named parameter
