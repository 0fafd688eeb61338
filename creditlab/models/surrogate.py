"""Spike nonlinearities with pseudo-derivatives.

A spiking neuron emits ``z = H(x)`` with ``x = (v - A) / v_th`` the scaled
distance to threshold.  ``H`` has no useful derivative, so learning rules use
a pseudo-derivative ψ(x) in its place:

- ``"fast_sigmoid"`` — SuperSpike (Zenke & Ganguli 2018): ψ = 1 / (1 + slope·|x|)²
- ``"triangle"`` — Bellec et al. 2018/2020: ψ = γ · max(0, 1 − |x|), γ = ``dampening`` (0.3)
- ``"arctan"`` — Fang et al. 2021: ψ = (slope/2) / (1 + (π/2 · slope · x)²)
- ``"smooth"`` — not a surrogate: the forward pass itself is z = σ(slope·x), so
  the dynamics are differentiable and BPTT is exact (finite-difference checks).

ψ is with respect to ``x``; a model divides by ``v_th`` for ∂z/∂v.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import _checks

SURROGATES = ("fast_sigmoid", "triangle", "arctan", "smooth")


@dataclass(frozen=True)
class Surrogate:
    """A spike function and its pseudo-derivative ψ(x)."""

    name: str = "triangle"
    slope: float = 1.0
    dampening: float = 0.3

    def __post_init__(self) -> None:
        _checks.choice("surrogate", self.name, SURROGATES)
        _checks.positive("slope", self.slope)
        _checks.positive("dampening", self.dampening)

    def pseudo(self, x: torch.Tensor) -> torch.Tensor:
        """ψ(x): the pseudo-derivative (exact derivative for ``"smooth"``)."""
        if self.name == "fast_sigmoid":
            return 1.0 / (1.0 + self.slope * x.abs()) ** 2
        if self.name == "triangle":
            return self.dampening * torch.clamp(1.0 - self.slope * x.abs(), min=0.0) * self.slope
        if self.name == "arctan":
            return (self.slope / 2) / (1.0 + (math.pi / 2 * self.slope * x) ** 2)
        s = torch.sigmoid(self.slope * x)
        return self.slope * s * (1 - s)

    def spike(self, x: torch.Tensor) -> torch.Tensor:
        """z(x): Heaviside forward with ψ backward, or σ(slope·x) when smooth."""
        if self.name == "smooth":
            return torch.sigmoid(self.slope * x)
        return _SpikeFn.apply(x, self)


def make(surrogate: "str | Surrogate", slope: float | None = None) -> Surrogate:
    """Build a :class:`Surrogate` from a name (with optional slope) or pass one through."""
    if isinstance(surrogate, Surrogate):
        return surrogate
    if not isinstance(surrogate, str):
        raise TypeError(f"surrogate must be a name in {SURROGATES} or a Surrogate, got {type(surrogate).__name__}")
    if slope is None:
        slope = {"fast_sigmoid": 10.0, "triangle": 1.0, "arctan": 2.0, "smooth": 5.0}.get(surrogate, 1.0)
    return Surrogate(surrogate, slope)


class _SpikeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.pseudo(x), None
