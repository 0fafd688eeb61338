"""Backpropagation through time and surrogate-gradient learning.

BPTT (Werbos 1990; Rumelhart et al. 1986): the network is unrolled over the
run and the exact gradient of L = ℓ(y_1..y_T) is obtained by reverse-mode
autodiff through every step,

    ∂L/∂W = Σ_t (∂L/∂h_t) (∂h_t/∂W)_direct,
    ∂L/∂h_t = ∂ℓ/∂h_t + (∂L/∂h_{t+1}) (∂h_{t+1}/∂h_t).

SurrogateGradient (Neftci, Mostafa & Zenke 2019; Zenke & Ganguli 2018;
Bellec et al. 2018) is BPTT on a spiking network where ∂z/∂v — zero almost
everywhere for the Heaviside spike — is replaced by a pseudo-derivative ψ
(SuperSpike fast sigmoid, Bellec's triangle with dampening 0.3, or arctan).
"""
from __future__ import annotations

from typing import Any

import torch

from ..models.base import Model
from ..models.surrogate import Surrogate, make as make_surrogate
from .base import Rule


class BPTT(Rule):
    """Exact gradient by autograd through the unrolled run (writes ``p.grad``)."""

    name = "bptt"
    uses_autograd = True
    whole_sequence = True

    def end(self, outputs: torch.Tensor, target: Any, loss: torch.Tensor | None) -> None:
        if loss is None:
            raise ValueError(f"{type(self).__name__} needs a target to compute a loss; pass target= to sim.run")
        if loss.requires_grad:
            loss.backward()


class SurrogateGradient(BPTT):
    """BPTT through spikes with a pseudo-derivative.

    ``surrogate``: ``"fast_sigmoid"``, ``"triangle"`` (dampening 0.3), ``"arctan"``
    or a :class:`~creditlab.models.Surrogate`; ``None`` keeps the model's own.
    Attaching sets the model's spike function, since ψ is a property of how
    the neuron's spike is differentiated, shared with local rules' ψ.
    """

    name = "surrogate"
    model_kinds = ("spiking",)

    def __init__(self, surrogate: str | Surrogate | None = None, slope: float | None = None) -> None:
        super().__init__()
        self.surrogate = None if surrogate is None else make_surrogate(surrogate, slope)

    def alternative_hint(self, model: Model) -> str:
        return "; use BPTT() for rate or feed-forward models"

    def attach(self, model: Model) -> None:
        super().attach(model)
        if self.surrogate is not None:
            model.surrogate = self.surrogate
