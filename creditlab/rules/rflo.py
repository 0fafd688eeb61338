"""Random-feedback local online learning (RFLO) for rate RNNs.

Murray 2019 (eLife 8:e43299) keeps from RTRL's influence M_{k,ij} = ∂h_k/∂W_ij
only the synapse's own postsynaptic unit (k = i) and only its immediate
drive, dropping the non-local term Σ_l W_kl φ'(·) M_{l,ij}; the influence
becomes a per-synapse low-pass trace of local quantities, and the readout
weights in the error's path back to the units are replaced by a fixed random
feedback matrix B [n_rec, n_out] (as in feedback alignment).  The weight update
is ΔW_ij ∝ (B ε)_i · eligibility_ij with ε = y* − y, and ΔW_out ∝ ε rᵀ.

Murray's network puts φ before the leak, h ← h + (dt/τ)(−h + φ(u)), y = W_out h,
so φ'(u_i) enters his trace P_ij ← (1 − dt/τ) P_ij + (dt/τ) φ'(u_i) h_j.
creditlab's ``RateRNN`` puts φ after the leak (h ← (1 − λ) h + λ(W r + W_in u + b),
r = φ(h), y = W_out r, λ = dt/τ), so the same truncation of RTRL filters the
presynaptic rate and applies the postsynaptic φ'(h_i) where the trace is read:

    r̄_j^{t+1} = (1 − λ_e) r̄_j^t + λ_e r_j^t          recurrent synapses (r^t: presynaptic rate)
    ū_j^{t+1} = (1 − λ_e) ū_j^t + λ_e u_j^{t+1}      input synapses
    c^{t+1}   = (1 − λ_e) c^t + λ_e                   bias ("synapse" from a constant 1)
    e_ij^{t+1} = φ'(h_i^{t+1}) r̄_j^{t+1}               eligibility (likewise ū, c)
    ∂L/∂W_ij  ≈ Σ_t (B ∂ℓ_t/∂y_t)_i e_ij^t              (∂ℓ_t/∂y_t = −ε_t up to the loss's normalisation)
    ∂L/∂W_out = Σ_t (∂ℓ_t/∂y_t) r^tᵀ,   ∂L/∂b_out = Σ_t ∂ℓ_t/∂y_t     (the local delta rule, exact)

with λ_e = dt/τ_e and τ_e = τ by default (the value the truncation of RTRL gives).
The estimates are written as gradients (p.grad), so an optimizer's descent step
is Murray's ΔW ∝ +(B ε) e.  With ``feedback="symmetric"`` (B = W_outᵀ) and no
recurrent weights the dropped term vanishes and the estimate equals the exact
gradient; with recurrence it is RTRL truncated to local terms.

``feedback="random"`` draws B once at ``attach`` from N(0, 1/n_rec), the scale
of the readout's initialisation, so the estimate starts at the exact gradient's
scale (Murray draws N(0, 1/n_out); only the effective learning rate differs).

Memory is O(B·(N + n_in)) and nothing grows with the run's length; the traces
``"eligibility"`` (recurrent, [B, N, N]) and ``"eligibility_in"`` ([B, N, n_in])
are formed only when a monitor asks for them.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch

from .. import _checks
from ..models.base import Model
from ..models.rate import RateRNN
from .base import Rule, accumulate_grad

FEEDBACK = ("random", "symmetric")


class RFLO(Rule):
    """Murray's RFLO for a ``RateRNN``: local traces times randomly fed-back output error.

    ``tau_e``: trace time constant in seconds (``None``: the model's τ);
    ``feedback``: ``"random"`` (fixed B, drawn with ``seed``) or ``"symmetric"`` (B = W_outᵀ).
    Trains w_in, w_rec, b by the traces and w_out, b_out by the delta rule
    (those with ``requires_grad``).
    """

    name = "rflo"
    model_kinds = ("rate",)
    needs_output_error = True
    trace_names = ("eligibility", "eligibility_in")

    def __init__(self, tau_e: float | None = None, feedback: str = "random", seed: int | None = None) -> None:
        super().__init__()
        self.tau_e = None if tau_e is None else _checks.positive("tau_e", tau_e)
        self.feedback = _checks.choice("feedback", feedback, FEEDBACK)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.seed = seed
        self.feedback_matrix: torch.Tensor | None = None
        self._feedback: torch.Tensor | None = None
        self._traces: dict[str, Any] = {}
        self._grads: dict[str, torch.Tensor] = {}

    def alternative_hint(self, model: Model) -> str:
        if model.kind == "spiking":
            return "; use EProp() for spiking networks (RFLO's trace is e-prop's for rate units)"
        return "; use BPTT() or FA() for feed-forward models"

    def attach(self, model: Model) -> None:
        super().attach(model)
        if not isinstance(model, RateRNN):
            raise TypeError(f"RFLO trains a RateRNN, got {type(model).__name__}; use EProp() or BPTT()")
        tau_e = model.tau if self.tau_e is None else self.tau_e
        if tau_e < model.dt:
            raise ValueError(f"tau_e must be >= the model's dt={model.dt} for a stable trace, got {tau_e}")
        self.decay = model.dt / tau_e
        drawn = self.feedback_matrix is not None and self.feedback_matrix.shape == (model.n_rec, model.n_out)
        if self.feedback == "random" and not drawn:
            # drawn once: re-attaching (a new Simulator) must keep the same feedback pathway
            gen = torch.Generator()
            gen.manual_seed(self.seed if self.seed is not None else int(torch.randint(0, 2 ** 62, ()).item()))
            self.feedback_matrix = torch.randn(model.n_rec, model.n_out, generator=gen) / model.n_rec ** 0.5

    def feedback_weights(self) -> torch.Tensor:
        """B [n_rec, n_out]: the fixed random matrix, or W_outᵀ for symmetric feedback."""
        w_out = self.model.w_out.detach()
        if self.feedback == "symmetric":
            return w_out.t()
        return self.feedback_matrix.to(device=w_out.device, dtype=w_out.dtype)

    def begin(self, model: Model, x: torch.Tensor, target: Any, loss: Any) -> None:
        super().begin(model, x, target, loss)
        batch = x.shape[1]
        zeros = functools.partial(torch.zeros, device=x.device, dtype=x.dtype)
        self._feedback = self.feedback_weights().to(x.dtype)   # W_out is fixed during a run
        self._traces = {"rec": zeros(batch, model.n_rec), "in": zeros(batch, model.n_in), "bias": 0.0,
                        "psi": zeros(batch, model.n_rec)}
        trained = {"w_in": model.w_in, "w_rec": model.w_rec, "b": model.b,
                   "w_out": model.w_out, "b_out": model.b_out}
        self._grads = {n: zeros(p.shape) for n, p in trained.items() if p is not None and p.requires_grad}

    @torch.no_grad()
    def step(self, t: int, local: NamedTuple, y_t: torch.Tensor, error_t: torch.Tensor | None) -> None:
        traces, lam = self._traces, self.decay
        traces["rec"].mul_(1 - lam).add_(local.pre_rec, alpha=lam)
        traces["in"].mul_(1 - lam).add_(local.x, alpha=lam)
        traces["bias"] = (1 - lam) * traces["bias"] + lam
        traces["psi"] = local.psi
        if error_t is None:
            return
        # (B ∂ℓ/∂y)_i φ'(h_i): the postsynaptic factor of every synapse onto unit i
        post = (error_t @ self._feedback.t()) * local.psi
        grads = self._grads
        if "w_rec" in grads:
            grads["w_rec"] += post.t() @ traces["rec"]
        if "w_in" in grads:
            grads["w_in"] += post.t() @ traces["in"]
        if "b" in grads:
            grads["b"] += traces["bias"] * post.sum(0)
        if "w_out" in grads:
            grads["w_out"] += error_t.t() @ local.r
        if "b_out" in grads:
            grads["b_out"] += error_t.sum(0)

    def traces(self) -> dict[str, torch.Tensor]:
        if not self._traces:
            return {}
        post = self._traces["psi"].unsqueeze(-1)
        return {"eligibility": post * self._traces["rec"].unsqueeze(1),
                "eligibility_in": post * self._traces["in"].unsqueeze(1)}

    def end(self, outputs: torch.Tensor, target: Any, loss: torch.Tensor | None) -> None:
        if target is None:
            return
        for name, grad in self._grads.items():
            accumulate_grad(getattr(self.model, name), grad)
        self._grads = {}
