"""Multi-step LIF/ALIF layers fused over time: one autograd node per sequence.

The reference path steps :meth:`LIF.step` under autograd, which records ~20
graph nodes per time step and replays them one by one in backward.  Here the
whole sequence is one :class:`torch.autograd.Function` whose forward and
backward are hand-written loops over time with preallocated buffers:

Forward, for t = 0 … T−1 (the equations of :mod:`creditlab.models.lif`, with
z^{−1}, v^{−1}, a^{−1} the initial state)

    c^t = I^t + z^{t−1} W_recᵀ
    v^t = α v^{t−1} + c^t − v_th z^{t−1}
    a^t = ρ a^{t−1} + z^{t−1}
    s^t = (v^t − v_th − β a^t) / v_th
    z^t = H(s^t) · free^t              (free^t = 1 unless refractory)

Backward (BPTT with z's derivative replaced by ψ, as the reference's
surrogate spike does), carrying g_v = ∂L/∂v, g_a = ∂L/∂a back in time:

    ḡ_z^t = ∂L/∂z^t + [−v_th g_v^{t+1} + g_a^{t+1} + g_v^{t+1} W_rec]   (through step t+1)
    g_s^t = ḡ_z^t · ψ(s^t) · free^t / v_th
    g_v^t = α g_v^{t+1} + g_s^t,    g_a^t = ρ g_a^{t+1} − β g_s^t
    ∂L/∂I^t = g_v^t,   ∂L/∂W_rec = Σ_t (g_v^t)ᵀ z^{t−1}   (one matmul over all T·B rows)

The forward stores only s^t and z^t; ψ is evaluated in backward, vectorised
over chunks of steps.  The weight gradient is one [N, T·B]·[T·B, N]
product instead of T small ones — the three products per step (forward,
input-gradient, weight-gradient) are all that is left of the recurrence.

Equality with the reference step is tested spike for spike and gradient for
gradient (tests/test_fused.py).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch

from .. import _checks
from . import fused_triton
from .surrogate import Surrogate, make as make_surrogate

#: ``lif_sequence(backend=…)``: "auto" takes the Triton kernels for CUDA tensors when they apply
BACKENDS = ("auto", "torch", "triton")


class LIFSequenceState(NamedTuple):
    """Membrane ``v``, last spikes ``z``, adaptation ``a`` ``[B, N]`` and refractory counters."""
    v: torch.Tensor
    z: torch.Tensor
    a: torch.Tensor
    refractory: torch.Tensor


class _Config(NamedTuple):
    alpha: float
    rho: float
    v_th: float
    n_refractory: int
    surrogate: Surrogate
    triton: bool = False


class _LIFSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current: torch.Tensor, w_rec: torch.Tensor | None, beta: torch.Tensor | None,  # type: ignore[override]
                v0: torch.Tensor, z0: torch.Tensor, a0: torch.Tensor, refractory0: torch.Tensor,
                cfg: _Config):
        ctx.cfg = cfg
        if cfg.triton:
            out = fused_triton.forward(current, w_rec, beta, v0, z0, a0, refractory0, _kernel_config(cfg))
            ctx.save_for_backward(out.scaled, out.spikes, out.free, w_rec, beta, z0)
            ctx.mark_non_differentiable(out.refractory)
            return out.spikes, out.v, out.a, out.refractory
        n_steps = current.shape[0]
        adaptive = beta is not None
        spikes = torch.empty_like(current)
        scaled = torch.empty_like(current)
        free = torch.empty(current.shape, dtype=torch.bool, device=current.device) if cfg.n_refractory else None
        v, a, refractory = v0.clone(), a0.clone(), refractory0.clone()
        z_prev = z0
        c = torch.empty_like(v0) if w_rec is not None else None     # recurrent drive buffer
        for t in range(n_steps):
            # the reference's operation order (product, then sums; (α v + c) − v_th z), so
            # spikes agree bit for bit: addmm would round the recurrent sum differently
            if w_rec is not None:
                torch.mm(z_prev, w_rec.t(), out=c).add_(current[t])
                v.mul_(cfg.alpha).add_(c)
            else:
                v.mul_(cfg.alpha).add_(current[t])
            v.sub_(z_prev, alpha=cfg.v_th)
            a.mul_(cfg.rho).add_(z_prev)
            s = scaled[t]
            torch.sub(v, cfg.v_th, out=s)
            if adaptive:
                s.sub_(beta * a)
            s.div_(cfg.v_th)
            z = spikes[t]
            # Surrogate.spike's forward values, written in place (its autograd node is not wanted here)
            if cfg.surrogate.name == "smooth":
                torch.sigmoid(s * cfg.surrogate.slope, out=z)
            else:
                torch.gt(s, 0, out=z)
            if cfg.n_refractory:
                f = free[t]
                torch.eq(refractory, 0, out=f)
                z.mul_(f)
                refractory = torch.where(z > 0, cfg.n_refractory - 1, (refractory - 1).clamp_(min=0))
            z_prev = z
        ctx.save_for_backward(scaled, spikes, free, w_rec, beta, z0)
        ctx.mark_non_differentiable(refractory)
        return spikes, v, a, refractory

    @staticmethod
    def backward(ctx, g_spikes: torch.Tensor | None, g_v_end: torch.Tensor | None,  # type: ignore[override]
                 g_a_end: torch.Tensor | None, _g_refractory: torch.Tensor | None):
        scaled, spikes, free, w_rec, beta, z0 = ctx.saved_tensors
        cfg: _Config = ctx.cfg
        n_steps = scaled.shape[0]
        if g_spikes is None:
            g_spikes = torch.zeros_like(scaled)
        if cfg.triton:
            out = fused_triton.ForwardOut(spikes, scaled, free, None, None, None)
            g_current, g_v, g_z, g_a = fused_triton.backward(out, g_spikes, g_v_end, g_a_end, w_rec, beta, z0,
                                                             _kernel_config(cfg))
            return g_current, _recurrent_weight_grad(ctx, g_current, spikes, z0, w_rec), None, g_v, g_z, g_a, None, None
        g_current = torch.empty_like(scaled)
        g_v = torch.zeros_like(z0) if g_v_end is None else g_v_end.clone()
        # g_a is only non-zero when a feeds the threshold (β ≠ 0) or the final a is used
        track_a = beta is not None or g_a_end is not None
        g_a = torch.zeros_like(z0) if g_a_end is None else g_a_end.clone()
        g_z = torch.zeros_like(z0)
        chunk = max(1, PSI_CHUNK_ELEMENTS // scaled[0].numel())
        for t in range(n_steps - 1, -1, -1):
            if t == n_steps - 1 or (t + 1) % chunk == 0:
                start = (t // chunk) * chunk
                psi = _pseudo_derivative(scaled[start:t + 1], free, start, t + 1, cfg)
            g_s = g_z.add_(g_spikes[t]).mul_(psi[t - start])   # reuses g_z's buffer until rewritten below
            g_vt = g_current[t]
            torch.add(g_v, g_s, out=g_vt)
            if beta is not None:
                g_a.sub_(beta * g_s)
            # ∂L/∂z^{t−1} through step t: reset, adaptation input, recurrent input
            torch.mul(g_vt, -cfg.v_th, out=g_z)
            if track_a:
                g_z.add_(g_a)
                g_a.mul_(cfg.rho)
            if w_rec is not None:
                g_z.addmm_(g_vt, w_rec)
            torch.mul(g_vt, cfg.alpha, out=g_v)
        return g_current, _recurrent_weight_grad(ctx, g_current, spikes, z0, w_rec), None, g_v, g_z, g_a, None, None


def _recurrent_weight_grad(ctx: Any, g_current: torch.Tensor, spikes: torch.Tensor, z0: torch.Tensor,
                           w_rec: torch.Tensor | None) -> torch.Tensor | None:
    """∂L/∂W_rec = Σ_t (g_v^t)ᵀ z^{t−1}: one [N, T·B]·[T·B, N] product."""
    if w_rec is None or not ctx.needs_input_grad[1]:
        return None
    previous = torch.cat([z0.unsqueeze(0), spikes[:-1]])
    return g_current.flatten(0, 1).t() @ previous.flatten(0, 1)


def _kernel_config(cfg: _Config) -> fused_triton.KernelConfig:
    return fused_triton.KernelConfig(cfg.alpha, cfg.rho, cfg.v_th, cfg.n_refractory, cfg.surrogate)


#: ψ is evaluated for this many elements (steps × batch × units) at a time in backward:
#: vectorised over steps, yet small enough that its temporaries are recycled by the
#: allocator instead of being freshly mapped (and page-faulted) for all T steps at once
PSI_CHUNK_ELEMENTS = 1 << 20


def _pseudo_derivative(scaled: torch.Tensor, free: torch.Tensor | None, start: int, stop: int,
                       cfg: _Config) -> torch.Tensor:
    """∂z/∂v = ψ(s)·free / v_th for steps ``start:stop`` (``scaled`` is already that slice)."""
    psi = cfg.surrogate.pseudo(scaled).div_(cfg.v_th)
    if free is not None:
        psi.mul_(free[start:stop])
    return psi


def lif_sequence(current: torch.Tensor, *, v_th: float = 1.0, alpha: float, surrogate: str | Surrogate = "fast_sigmoid",
                 w_rec: torch.Tensor | None = None, beta: torch.Tensor | None = None, rho: float = 1.0,
                 n_refractory: int = 0, state: LIFSequenceState | None = None, backend: str = "auto"
                 ) -> tuple[torch.Tensor, LIFSequenceState]:
    """Run a LIF/ALIF layer over a whole input current ``[T, B, N]`` as one autograd node.

    ``current`` is the feed-forward drive (e.g. ``linear(x)`` for all steps at
    once); ``w_rec [N, N]`` adds recurrence (apply any mask before passing it);
    ``beta [N]`` makes neurons adaptive with decay ``rho``.  Returns the spikes
    ``[T, B, N]`` and the final :class:`LIFSequenceState`.  Gradients flow to
    ``current``, ``w_rec`` and the initial ``state`` through the surrogate ψ.

    ``backend``: ``"torch"`` runs the loops above in PyTorch (the reference);
    ``"triton"`` runs them as Triton kernels (:mod:`creditlab.models.fused_triton`:
    CUDA tensors, float32/float64, Heaviside surrogates; CPU tensors only under
    ``TRITON_INTERPRET=1``); ``"auto"`` takes Triton for CUDA tensors where it
    applies and PyTorch otherwise.  Both give the same spikes.
    """
    _checks.choice("backend", backend, BACKENDS)
    _checks.tensor("current", current, rank=3)
    if not current.is_floating_point():
        raise TypeError(f"current must be a floating-point tensor, got dtype {current.dtype}")
    n_steps, batch, n_units = current.shape
    if n_steps < 1:
        raise ValueError(f"current must have at least one time step, got shape {tuple(current.shape)}")
    _checks.positive("v_th", v_th)
    _checks.in_range("alpha", alpha, 0.0, 1.0)
    _checks.in_range("rho", rho, 0.0, 1.0)
    if n_refractory < 0:
        raise ValueError(f"n_refractory must be >= 0 steps, got {n_refractory}")
    surrogate = make_surrogate(surrogate)
    if n_refractory and surrogate.name == "smooth":
        raise ValueError("n_refractory must be 0 with surrogate='smooth' (graded spikes)")
    if w_rec is not None:
        _checks.tensor("w_rec", w_rec, rank=2, shape=(n_units, n_units))
    if beta is not None:
        _checks.tensor("beta", beta, shape=(n_units,))
        if beta.requires_grad:
            raise ValueError("beta is a fixed neuron constant here; pass beta.detach()")
        beta = beta.to(current.dtype) if bool((beta != 0).any()) else None
    if state is None:
        zeros = current.new_zeros(batch, n_units)
        state = LIFSequenceState(zeros, zeros, zeros, torch.zeros(batch, n_units, dtype=torch.int32,
                                                                  device=current.device))
    cfg = _Config(float(alpha), float(rho), float(v_th), int(n_refractory), surrogate,
                  _use_triton(backend, current, surrogate, beta is not None, n_refractory > 0))
    spikes, v, a, refractory = _LIFSequence.apply(current, w_rec, beta, state.v, state.z, state.a,
                                                  state.refractory, cfg)
    return spikes, LIFSequenceState(v, spikes[-1], a, refractory)


def _use_triton(backend: str, current: torch.Tensor, surrogate: Surrogate, adaptive: bool,
                refractory: bool) -> bool:
    if backend == "torch":
        return False
    if backend == "auto":
        return fused_triton.auto_usable(current, surrogate, adaptive, refractory)
    reason = fused_triton.unavailable_reason(current, surrogate)
    if reason is not None:
        raise ValueError(f"backend='triton' cannot run this sequence: {reason}; use backend='torch' or 'auto'")
    return True


class _LeakyScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, drive: torch.Tensor, y0: torch.Tensor, kappa: float):  # type: ignore[override]
        out = torch.empty_like(drive)
        y = y0
        for t in range(drive.shape[0]):
            y = torch.add(drive[t], y, alpha=kappa, out=out[t])
        ctx.kappa = kappa
        return out

    @staticmethod
    def backward(ctx, g_out: torch.Tensor):  # type: ignore[override]
        g_drive = torch.empty_like(g_out)
        g = g_out[-1]
        g_drive[-1] = g
        for t in range(g_out.shape[0] - 2, -1, -1):
            g = torch.add(g_out[t], g, alpha=ctx.kappa, out=g_drive[t])
        return g_drive, g_drive[0] * ctx.kappa, None


def leaky_scan(drive: torch.Tensor, y0: torch.Tensor, kappa: float) -> torch.Tensor:
    """y^t = κ y^{t−1} + u^t over ``drive [T, …]`` from ``y0``, as one autograd node."""
    return _LeakyScan.apply(drive, y0, float(kappa))
