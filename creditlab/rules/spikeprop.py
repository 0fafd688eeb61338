"""SpikeProp: error backpropagation through first-spike times.

Bohte, Kok & La Poutré 2002, "Error-backpropagation in temporally encoded
networks of spiking neurons", Neurocomputing 48:17–37.  For the SRM network
of :class:`creditlab.models.SRM` (x_j(t) = Σ_i Σ_k w_ij^k ε(t − t_i − d^k),
first spike at x_j(t_j) = ϑ) and an error E of the output spike times — Bohte's

    E = ½ Σ_j (t_j − t_j^d)²                                          (eq. 5)

— the threshold condition ties t_j to the weights and presynaptic times, so
by the implicit function theorem (eqs. 9–12):

    ∂t_j/∂w_ij^k = −y_i^k(t_j) / D_j,        D_j = ∂x_j/∂t (t_j)
    ∂t_j/∂t_i    =  Σ_k w_ij^k ε'(t_j − t_i − d^k) / D_j
    output layer:  δ_j = ∂E/∂t_j / D_j  (= (t_j − t_j^d)/D_j for eq. 5)
    hidden layer:  δ_i = (Σ_j δ_j Σ_k w_ij^k ε'(t_j − t_i − d^k)) / D_i
    ∂E/∂w_ij^k   = −δ_j y_i^k(t_j)

(Bohte writes δ with the opposite sign and Δw = −η ∂E/∂w.)  The model finds
t_j by linear interpolation between the clock samples t_{n−1}, t_n that
bracket ϑ, i.e. as the crossing of the interpolated membrane x̃_j, so the
rule evaluates the same equations on x̃_j: with α = (t_j − t_{n−1})/dt,

    y_i^k(t_j)  → (1 − α) ε(t_{n−1} − t_i − d^k) + α ε(t_n − t_i − d^k)
    ε'(t_j − …) → (1 − α) ε'(t_{n−1} − t_i − d^k) + α ε'(t_n − t_i − d^k)
    D_j         → (x_j(t_n) − x_j(t_{n−1})) / dt   (> 0: the crossing is upward)

This is the exact gradient of the simulated, interpolated spike times (it
matches autograd and finite differences) and tends to Bohte's expressions as
dt → 0.  A silent neuron has no crossing: its spike time does not depend on
the weights, so its δ is 0 (an output neuron silent for a pattern is scored
at the end of the window by the model's output and does not learn from it).

∂E/∂t_j of the output neurons is taken by autograd from whatever loss the
simulator was given (``SpikeTimeLoss`` is eq. 5); the backward pass through
the layers is the closed form above, not autograd.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch

from ..models.base import Model
from ..models.srm import SRMLocals, srm_kernel, srm_kernel_derivative
from .base import Rule, accumulate_grad


class CrossingTerms(NamedTuple):
    """Interpolated kernel terms of one layer at its neurons' crossings."""
    kernel: torch.Tensor       # ỹ_i^k(t_j) [B, n_post, n_pre, m]
    slope: torch.Tensor        # ε̃'(t_j − t_i − d^k) [B, n_post, n_pre, m]
    rate: torch.Tensor         # D_j [B, n_post], 1 where silent
    fired: torch.Tensor        # [B, n_post] bool


class SpikeProp(Rule):
    """Bohte's SpikeProp on an :class:`~creditlab.models.SRM` network (writes ``p.grad``)."""

    name = "spikeprop"
    model_kinds = ("spike-timing",)
    trace_names = ("spike_times",)

    def __init__(self) -> None:
        super().__init__()
        self._local: SRMLocals | None = None
        self._loss: Callable | None = None

    def alternative_hint(self, model: Model) -> str:
        return ("; SpikeProp differentiates first-spike times and needs first-spike-time SRM neurons "
                "(creditlab.models.SRM); for LIF networks use SurrogateGradient() or EProp(), "
                "for rate or feed-forward models BPTT() or Backprop()")

    def begin(self, model: Model, x: torch.Tensor, target: Any, loss: Any) -> None:
        super().begin(model, x, target, loss)
        self._local, self._loss = None, loss

    def step(self, t: int, local: SRMLocals, y_t: torch.Tensor, error_t: torch.Tensor | None) -> None:
        self._local = local

    def traces(self) -> dict[str, torch.Tensor]:
        return {} if self._local is None else {"spike_times": self._local.spike_times}

    def end(self, outputs: torch.Tensor, target: Any, loss: torch.Tensor | None) -> None:
        if target is None or self._local is None:
            raise ValueError("SpikeProp needs a target to compute the spike-time error; pass target= to sim.run")
        model = self.model
        times, brackets = self._local.layer_times, self._local.brackets
        grad_t = output_time_gradient(self._loss, outputs, target, times[-1])
        for layer in reversed(range(len(model.weights))):
            weight = model.weights[layer].detach()
            terms = crossing_terms(model, weight, times[layer], times[layer + 1], brackets[layer])
            delta = torch.where(terms.fired, grad_t / terms.rate, torch.zeros_like(grad_t))
            accumulate_grad(model.weights[layer], -torch.einsum("bj,bjik->jik", delta, terms.kernel))
            if layer > 0:
                grad_t = torch.einsum("bj,bjik,jik->bi", delta, terms.slope, weight)


def output_time_gradient(loss: Callable, outputs: torch.Tensor, target: Any,
                         out_times: torch.Tensor) -> torch.Tensor:
    """∂E/∂t_j of the output spike times ``[B, n_out]``, by autograd through ``loss``.

    The model's output is y_n = t_j at every step n at or after the spike, so
    ∂E/∂t_j sums ∂E/∂y_n over those steps.
    """
    y = outputs.detach().requires_grad_(True)
    with torch.enable_grad():
        value = loss(y, target)
        (grad_y,) = torch.autograd.grad(value, y, allow_unused=True)
    if grad_y is None:
        return torch.zeros_like(out_times)
    fired_at_step = (outputs.detach() == out_times) & torch.isfinite(out_times)
    return (grad_y * fired_at_step).sum(0)


def crossing_terms(model: Model, weight: torch.Tensor, pre: torch.Tensor, post: torch.Tensor,
                   bracket: torch.Tensor) -> CrossingTerms:
    """ỹ, ε̃' and D_j of one layer at the interpolated crossings of its neurons."""
    dt, tau = model.dt, model.tau
    fired = torch.isfinite(post)
    start = torch.where(fired, bracket, torch.zeros_like(bracket))
    alpha = torch.where(fired, (post - start) / dt, torch.zeros_like(post))[:, :, None, None]
    delay = model.delay.to(pre.dtype)
    s_start = start[:, :, None, None] - pre[:, None, :, None] - delay      # [B, n_post, n_pre, m]
    s_end = s_start + dt
    k_start, k_end = srm_kernel(s_start, tau), srm_kernel(s_end, tau)
    kernel = (1 - alpha) * k_start + alpha * k_end
    slope = (1 - alpha) * srm_kernel_derivative(s_start, tau) + alpha * srm_kernel_derivative(s_end, tau)
    rise = torch.einsum("bjik,jik->bj", k_end - k_start, weight)
    rate = torch.where(fired, rise / dt, torch.ones_like(rise))
    return CrossingTerms(kernel, slope, rate, fired)
