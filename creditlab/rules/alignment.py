"""How close is a rule's estimate to the exact gradient on the same batch?

``exact_gradient`` runs the model once with autograd (BPTT through the run;
through ψ for spiking models) and returns ∂L/∂θ without touching ``p.grad``.
``alignment`` compares two gradient dictionaries by cosine and angle, over
all parameters together and per parameter; ``rule_alignment`` does both for
a rule on one batch.  This is the measure that compares rules fairly.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..models.base import Model
from .base import Alignment, Rule


def exact_gradient(model: Model, x: torch.Tensor, target: Any,
                   loss: Callable | None = None) -> dict[str, torch.Tensor]:
    """∂L/∂θ for every trainable parameter, by autograd through the unrolled run."""
    from ..simulator.engine import Simulator

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with torch.enable_grad():
        result = Simulator(model).run(x, target=target, loss=loss)
        grads = torch.autograd.grad(result.loss, list(params.values()), allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(p)).detach()
            for (n, p), g in zip(params.items(), grads)}


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return 0.0
    return float((a @ b) / (na * nb))


def alignment(estimate: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> Alignment:
    """Cosine / angle between ``estimate`` and ``reference`` over their shared names."""
    names = [n for n in reference if n in estimate]
    if not names:
        raise ValueError("estimate and reference share no parameter names; "
                         f"estimate has {sorted(estimate)}, reference has {sorted(reference)}")
    flat_e = torch.cat([estimate[n].detach().reshape(-1).double() for n in names])
    flat_r = torch.cat([reference[n].detach().reshape(-1).double() for n in names])
    cos = _cosine(flat_e, flat_r)
    per = {n: _cosine(estimate[n].detach().reshape(-1).double(), reference[n].detach().reshape(-1).double())
           for n in names}
    return Alignment(cos, math.degrees(math.acos(max(-1.0, min(1.0, cos)))), per)


def rule_estimate(model: Model, rule: Rule, x: torch.Tensor, target: Any,
                  loss: Callable | None = None) -> dict[str, torch.Tensor]:
    """The rule's gradient estimate for one batch, leaving ``p.grad`` as it was."""
    from ..simulator.engine import Simulator

    params = dict(model.named_parameters())
    saved = {n: None if p.grad is None else p.grad.clone() for n, p in params.items()}
    for p in params.values():
        p.grad = None
    try:
        Simulator(model, rule).run(x, target=target, loss=loss)
        return {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}
    finally:
        for n, p in params.items():
            p.grad = saved[n]


def rule_alignment(model: Model, rule: Rule, x: torch.Tensor, target: Any,
                   loss: Callable | None = None) -> Alignment:
    """Alignment of ``rule``'s estimate with the exact gradient on the batch ``(x, target)``.

    Only the parameters the rule trains (those it writes a gradient for) count.
    """
    estimate = rule_estimate(model, rule, x, target, loss)
    reference = exact_gradient(model, x, target, loss)
    return alignment(estimate, {n: g for n, g in reference.items() if n in estimate})
