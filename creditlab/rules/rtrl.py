"""Real-time recurrent learning: the exact gradient, carried forward online.

RTRL (Williams & Zipser 1989, Neural Comput. 1:270) propagates the
*influence* of every parameter on the network state, M_θ^t = ∂s^t/∂θ, forward
in time together with the state, and adds each step's contribution to the
gradient as soon as the output error ∂ℓ_t/∂y_t is known:

    M_θ^{t+1} = (∂s^{t+1}/∂s^t) M_θ^t + (∂s^{t+1}/∂θ)_direct,     M_θ^0 = 0
    dL/dθ    = Σ_t (∂ℓ_t/∂y_t) (∂y_t/∂s_t) M_θ^t  (+ the readout's own terms)

No graph over time is kept, and the result equals BPTT's gradient exactly
(the run's initial state counts as a constant, as in BPTT).

Rate network (creditlab's ``RateRNN``, λ = dt/τ, r = φ(h)):

    h^{t+1} = (1 − λ) h^t + λ (W r^t + W_in u^{t+1} + b),    y^{t+1} = W_out r^{t+1} + b_out
    M_{k,ij}^{t+1} = (1 − λ) M_{k,ij}^t + λ Σ_l W_kl φ'(h_l^t) M_{l,ij}^t + λ δ_ki r_j^t      (θ = W_ij)
                    input weights: last term λ δ_ki u_j^{t+1};  bias: λ δ_ki
    dL/dθ += Σ_k (W_outᵀ ∂ℓ_{t+1}/∂y)_k φ'(h_k^{t+1}) M_{k,θ}^{t+1}
    dL/dW_out += (∂ℓ_{t+1}/∂y) r^{t+1}ᵀ,   dL/db_out += ∂ℓ_{t+1}/∂y

Spiking network (creditlab's ``LIF`` / ALIF, Bellec et al. 2020), state s = (v, a)
with the previous spikes z^t a function of it.  With ψ^t = ∂z^t/∂v^t the
pseudo-derivative (0 while refractory), so that ∂z^t/∂a^t = −β ψ^t, and the
spike influence Z_θ^t = ∂z^t/∂θ = ψ^t (M_{v,θ}^t − β M_{a,θ}^t):

    v^{t+1} = α v^t + W_rec z^t + W_in x^{t+1} − v_th z^t,   a^{t+1} = ρ a^t + z^t
    M_{v,θ}^{t+1} = α M_{v,θ}^t + (W_rec − v_th I) Z_θ^t + direct
                    direct for W_rec,ij: δ_ki m_ij z_j^t (m: the no-autapse mask);  W_in,ij: δ_ki x_j^{t+1}
    M_{a,θ}^{t+1} = ρ M_{a,θ}^t + Z_θ^t
    y^{t+1} = κ y^t + W_out z^{t+1} + b_out  ⇒  Y_θ^{t+1} = κ Y_θ^t + W_out Z_θ^{t+1}   (∂y/∂θ)
    dL/dθ += (∂ℓ_{t+1}/∂y) Y_θ^{t+1}
    readout:  z̄^{t+1} = κ z̄^t + z^{t+1},  c^{t+1} = κ c^t + 1
              dL/dW_out += (∂ℓ_{t+1}/∂y) z̄^{t+1}ᵀ,   dL/db_out += c^{t+1} ∂ℓ_{t+1}/∂y

The reset −v_th z^t and the adaptation are differentiated through ψ exactly as
the surrogate-gradient BPTT graph does, so both give the same number.

Cost: per batch element the influence of W_rec alone is n·n² numbers, so the
state memory is O(n³) and the Jacobian product costs O(n⁴) time per step.  The
rule estimates the memory at ``attach`` (per batch element) and again at the
start of each run (for the actual batch) and refuses to run above
``max_memory_bytes``; e-prop (``EProp``) and RFLO (``RFLO``) are the O(n²)
approximations to use instead.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch

from .. import _checks
from ..models.base import Model
from ..models.lif import LIF
from ..models.rate import RateRNN
from .base import Rule, accumulate_grad

#: default ceiling on the influence tensors' memory (2 GiB)
DEFAULT_MAX_MEMORY = 2 * 2 ** 30


def _add_direct(influence: torch.Tensor, pre: torch.Tensor, scale: float) -> None:
    """Add ``scale · δ_ki pre_ij`` to an influence ``[B, N, N·n_pre]`` of a ``[N, n_pre]`` parameter.

    ``pre`` broadcasts to ``[B, n_pre, N]`` (indexed b, j, i): only the entries where the
    influenced unit k is the synapse's own postsynaptic unit i get a direct term.
    """
    batch, n_units, size = influence.shape
    diagonal = influence.view(batch, n_units, n_units, size // n_units).diagonal(dim1=1, dim2=2)
    diagonal.add_(pre, alpha=scale)


def _format_bytes(n_bytes: float) -> str:
    return f"{n_bytes / 2 ** 30:.2f} GiB" if n_bytes >= 2 ** 30 else f"{n_bytes / 2 ** 20:.1f} MiB"


class RTRL(Rule):
    """Exact online gradient by forward influence propagation (Williams & Zipser 1989).

    Trains a ``RateRNN`` (w_in, w_rec, b through the influence; w_out, b_out directly)
    or an ``LIF``/ALIF network without synaptic delays (w_in, w_rec through the
    influence of (v, a); w_out, b_out through the leaky readout's trace), writing
    ∂L/∂θ into ``p.grad``.  Parameters with ``requires_grad=False`` are skipped
    (and cost no memory).  ``max_memory_bytes`` bounds the influence tensors.
    """

    name = "rtrl"
    model_kinds = ("rate", "spiking")
    needs_output_error = True

    def __init__(self, max_memory_bytes: float = DEFAULT_MAX_MEMORY) -> None:
        super().__init__()
        self.max_memory_bytes = _checks.positive("max_memory_bytes", max_memory_bytes)
        self._influence: dict[str, list[torch.Tensor]] = {}
        self._grads: dict[str, torch.Tensor] = {}
        self._aux: dict[str, Any] = {}

    def alternative_hint(self, model: Model) -> str:
        return "; use BPTT() for feed-forward models (one step needs no forward influence)"

    # -- memory -------------------------------------------------------------------
    def _influenced(self, model: Model) -> dict[str, torch.nn.Parameter]:
        """The parameters trained through the state influence (the O(n³) part)."""
        names = ("w_in", "w_rec", "b") if isinstance(model, RateRNN) else ("w_in", "w_rec")
        params = {n: getattr(model, n) for n in names}
        return {n: p for n, p in params.items() if p is not None and p.requires_grad}

    def memory_per_example(self, model: Model, dtype: torch.dtype) -> int:
        """Bytes of influence state per batch element for ``model`` at ``dtype``."""
        size = sum(p.numel() for p in self._influenced(model).values())
        n = model.n_units
        if isinstance(model, RateRNN):
            per_param = n                                    # M
        else:
            adaptive = 1 if model.n_adaptive else 0
            per_param = (2 + adaptive) * n + model.n_out     # M_v, Z, (M_a), Y
        itemsize = torch.empty((), dtype=dtype).element_size()
        return itemsize * size * per_param

    def _check_memory(self, model: Model, batch: int, dtype: torch.dtype) -> None:
        need = batch * self.memory_per_example(model, dtype)
        if need > self.max_memory_bytes:
            raise ValueError(
                f"RTRL needs about {_format_bytes(need)} for its influence tensors "
                f"({model.n_units} units, batch {batch}, {dtype}), above max_memory_bytes="
                f"{_format_bytes(self.max_memory_bytes)}; RTRL's memory grows as n³ per batch element. "
                f"Raise max_memory_bytes, shrink the network or batch, or use EProp() or RFLO(), "
                f"its O(n²) online approximations")

    # -- protocol -----------------------------------------------------------------
    def attach(self, model: Model) -> None:
        super().attach(model)
        if not isinstance(model, (RateRNN, LIF)):
            raise TypeError(f"RTRL knows the Jacobians of RateRNN and LIF networks only, "
                            f"got {type(model).__name__}; use BPTT() for other models")
        if isinstance(model, LIF) and model.max_delay > 0:
            raise TypeError("RTRL does not support synaptic delays (LIF with delays=...): the influence "
                            "would have to be kept for every delay; use SurrogateGradient() (BPTT)")
        self._check_memory(model, 1, model.dtype)

    def begin(self, model: Model, x: torch.Tensor, target: Any, loss: Any) -> None:
        super().begin(model, x, target, loss)
        batch, n = x.shape[1], model.n_units
        self._check_memory(model, batch, x.dtype)
        zeros = functools.partial(torch.zeros, device=x.device, dtype=x.dtype)
        influenced = self._influenced(model)
        spiking = isinstance(model, LIF)
        buffers_per_param = 1 if not spiking else (3 if model.n_adaptive else 2)
        self._influence = {name: [zeros(batch, n, p.numel()) for _ in range(buffers_per_param)]
                           for name, p in influenced.items()}
        self._grads = {name: zeros(p.numel()) for name, p in influenced.items()}
        for name in ("w_out", "b_out"):
            if getattr(model, name).requires_grad:
                self._grads[name] = zeros(getattr(model, name).shape)
        if spiking:
            self._aux = {"readout": {name: zeros(batch, model.n_out, p.numel()) for name, p in influenced.items()},
                         "zbar": zeros(batch, n), "count": 0.0}
        else:
            self._aux = {"psi_prev": zeros(batch, n)}

    @torch.no_grad()
    def step(self, t: int, local: NamedTuple, y_t: torch.Tensor, error_t: torch.Tensor | None) -> None:
        if error_t is None:
            return
        if isinstance(self.model, RateRNN):
            self._step_rate(local, error_t)
        else:
            self._step_spiking(local, error_t)

    def _step_rate(self, local: NamedTuple, error: torch.Tensor) -> None:
        model = self.model
        lam = model.leak
        w_rec = model.w_rec.detach()
        psi_prev = self._aux["psi_prev"]
        learning_signal = (error @ model.w_out.detach()) * local.psi      # (W_outᵀ ∂ℓ/∂y)_k φ'(h_k^{t+1})
        direct = {"w_rec": local.pre_rec.unsqueeze(-1), "w_in": local.x.unsqueeze(-1),
                  "b": torch.ones_like(local.psi[:, :1]).unsqueeze(-1)}
        for name, (inf,) in self._influence.items():
            recurrent = torch.einsum("kl,blp->bkp", w_rec, psi_prev.unsqueeze(-1) * inf)
            inf.mul_(1 - lam).add_(recurrent, alpha=lam)
            _add_direct(inf, direct[name], lam)
            self._grads[name] += torch.einsum("bk,bkp->p", learning_signal, inf)
        self._add_readout_grads(error, local.r)
        self._aux["psi_prev"] = local.psi

    def _step_spiking(self, local: NamedTuple, error: torch.Tensor) -> None:
        model = self.model
        n = model.n_units
        eye = torch.eye(n, device=error.device, dtype=error.dtype)
        through_spikes = -model.v_th * eye            # the reset −v_th z^t
        if model.recurrent:
            through_spikes = through_spikes + model.recurrent_weight().detach()
        w_out = model.w_out.detach()
        beta = model.beta_vec.to(error.dtype).unsqueeze(-1)
        direct = {"w_in": local.x.unsqueeze(-1)}
        if model.recurrent:
            direct["w_rec"] = local.pre_rec.unsqueeze(-1) * model.rec_mask.t().to(error.dtype)
        for name, buffers in self._influence.items():
            m_v, z_inf = buffers[0], buffers[1]
            m_v.mul_(model.alpha).add_(torch.einsum("kl,blp->bkp", through_spikes, z_inf))
            _add_direct(m_v, direct[name], 1.0)
            if len(buffers) == 3:
                m_a = buffers[2]
                m_a.mul_(model.rho).add_(z_inf)
                torch.mul(local.psi.unsqueeze(-1), m_v - beta * m_a, out=z_inf)
            else:
                torch.mul(local.psi.unsqueeze(-1), m_v, out=z_inf)
            readout = self._aux["readout"][name]
            readout.mul_(model.kappa).add_(torch.einsum("ok,bkp->bop", w_out, z_inf))
            self._grads[name] += torch.einsum("bo,bop->p", error, readout)
        zbar = self._aux["zbar"].mul_(model.kappa).add_(local.z)
        self._aux["count"] = model.kappa * self._aux["count"] + 1.0
        self._add_readout_grads(error, zbar, self._aux["count"])

    def _add_readout_grads(self, error: torch.Tensor, presynaptic: torch.Tensor, bias_trace: float = 1.0) -> None:
        if "w_out" in self._grads:
            self._grads["w_out"] += error.t() @ presynaptic
        if "b_out" in self._grads:
            self._grads["b_out"] += bias_trace * error.sum(0)

    def end(self, outputs: torch.Tensor, target: Any, loss: torch.Tensor | None) -> None:
        if target is None:
            return
        for name, grad in self._grads.items():
            accumulate_grad(getattr(self.model, name), grad)
        self._influence, self._grads, self._aux = {}, {}, {}

