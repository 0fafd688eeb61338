"""Recurrent LIF / ALIF network with a leaky-integrator readout.

Dynamics (Bellec et al. 2020, Nat. Commun. 11:3625, Methods), one step of
length ``dt``, for neuron j:

    v_j^{t+1} = α v_j^t + Σ_i W^rec_ji z_i^{t-d_ji} + Σ_i W^in_ji x_i^{t+1} − v_th z_j^t
    a_j^{t+1} = ρ a_j^t + z_j^t
    A_j^{t+1} = v_th + β_j a_j^{t+1}
    z_j^{t+1} = H((v_j^{t+1} − A_j^{t+1}) / v_th)     (0 while refractory)
    y_k^{t+1} = κ y_k^t + Σ_j W^out_kj z_j^{t+1} + b_k

with α = exp(−dt/τ_m), ρ = exp(−dt/τ_a), κ = exp(−dt/τ_out), β_j = β for
the ``adaptive_fraction`` of ALIF neurons and 0 for plain LIF neurons, reset
by subtraction, and a refractory period of n_ref = ``round(t_ref/dt)`` steps:
a neuron that spiked at step s cannot spike, and has pseudo-derivative 0,
until step s + n_ref (as in Bellec et al.'s LSNN code and Brian2).  H is the
Heaviside step in the forward pass and the surrogate ψ in the backward pass.

Recurrent spikes travel with per-synapse integer delays d_ji ∈ {0..D}
(in steps beyond the one-step recurrence): the state keeps a ring of the
last D+1 spike vectors, as Brian2's spike queue does, and a delay of 0 is
exactly the plain recurrent step.

A run that records an autograd graph and needs no per-step locals (BPTT or
surrogate gradients without monitors) goes through :meth:`LIF.run_fused`:
the same equations as one fused node per sequence
(:func:`creditlab.models.fused.lif_sequence`), equal spike for spike.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from .. import _checks
from .base import Model, init_normal
from .fused import LIFSequenceState, leaky_scan, lif_sequence
from .surrogate import Surrogate, make as make_surrogate

if TYPE_CHECKING:
    from ..simulator.monitors import Monitor


class LIFState(NamedTuple):
    v: torch.Tensor            # membrane potential [B, N]
    z: torch.Tensor            # spikes of the last step [B, N]
    a: torch.Tensor            # adaptation variable [B, N]
    refractory: torch.Tensor   # steps of refractoriness left [B, N]
    y: torch.Tensor            # readout [B, n_out]
    history: tuple[torch.Tensor, ...]  # z^{t-1}, …, z^{t-1-D} for delayed delivery
    zbar_in: torch.Tensor | None   # α-filtered input spikes (local rules only)
    zbar_rec: torch.Tensor | None  # α-filtered recurrent spikes (local rules only)


class LIFLocals(NamedTuple):
    """What a local rule may read after a step (all for the new time step)."""
    x: torch.Tensor         # input x^{t+1} [B, n_in]
    pre_rec: torch.Tensor   # presynaptic recurrent spikes delivered, z^t [B, N]
    zbar_in: torch.Tensor | None
    zbar_rec: torch.Tensor | None
    psi: torch.Tensor       # pseudo-derivative ∂z/∂v [B, N]
    v: torch.Tensor
    z: torch.Tensor
    a: torch.Tensor


class LIF(Model):
    """A recurrent network of LIF and ALIF neurons with a leaky readout.

    Parameters follow Bellec et al. 2020; times are in seconds.
    ``delays`` is an integer tensor ``[n_rec, n_rec]`` of per-synapse delays in
    steps (0 = plain recurrence), or an int D to draw them uniformly in 0..D.
    """

    kind = "spiking"

    def __init__(self, n_in: int, n_rec: int, n_out: int, adaptive_fraction: float = 0.0,
                 dt: float = 1e-3, tau_m: float = 20e-3, tau_a: float = 2000e-3,
                 beta: float = 1.8, v_th: float = 1.0, t_ref: float = 0.0,
                 tau_out: float = 20e-3, surrogate: str | Surrogate = "triangle",
                 slope: float | None = None, recurrent: bool = True,
                 delays: torch.Tensor | int | None = None, w_in_gain: float = 1.0,
                 w_rec_gain: float = 1.0, seed: int | None = None) -> None:
        super().__init__()
        self.n_in = _checks.positive_int("n_in", n_in)
        self.n_units = self.n_rec = _checks.positive_int("n_rec", n_rec)
        self.n_out = _checks.positive_int("n_out", n_out)
        self.adaptive_fraction = _checks.in_range("adaptive_fraction", adaptive_fraction, 0.0, 1.0)
        self.dt = _checks.positive("dt", dt)
        self.tau_m = _checks.positive("tau_m", tau_m)
        self.tau_a = _checks.positive("tau_a", tau_a)
        self.tau_out = _checks.positive("tau_out", tau_out)
        self.beta = _checks.non_negative("beta", beta)
        self.v_th = _checks.positive("v_th", v_th)
        self.n_refractory = int(round(_checks.non_negative("t_ref", t_ref) / self.dt))
        self.surrogate = make_surrogate(surrogate, slope)
        if self.n_refractory and self.surrogate.name == "smooth":
            # a graded spike σ(x) is never exactly 0, so every neuron would stay refractory
            raise ValueError(f"t_ref must be 0 with surrogate='smooth' (graded spikes), got t_ref={t_ref}")
        self.recurrent = bool(recurrent)
        self.alpha = math.exp(-self.dt / self.tau_m)
        self.rho = math.exp(-self.dt / self.tau_a)
        self.kappa = math.exp(-self.dt / self.tau_out)

        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        n_adaptive = int(round(self.adaptive_fraction * n_rec))
        # ALIF neurons come last so populations are contiguous in rasters.
        beta_vec = torch.zeros(n_rec)
        beta_vec[n_rec - n_adaptive:] = self.beta
        self.register_buffer("beta_vec", beta_vec)
        self.n_adaptive = n_adaptive

        with torch.random.fork_rng(enabled=gen is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.w_in = init_normal((n_rec, n_in), n_in, w_in_gain)
            self.w_rec = init_normal((n_rec, n_rec), n_rec, w_rec_gain) if self.recurrent else None
            self.w_out = init_normal((n_out, n_rec), n_rec)
            self.b_out = nn.Parameter(torch.zeros(n_out))
        mask = 1.0 - torch.eye(n_rec)  # no autapses, as in Bellec et al.
        self.register_buffer("rec_mask", mask)
        self._set_delays(delays, gen)
        self._masked_rec: tuple[tuple[int, int, int, int], torch.Tensor] | None = None

    # -- delays ---------------------------------------------------------------
    def _set_delays(self, delays: torch.Tensor | int | None, gen: torch.Generator | None) -> None:
        if delays is None or not self.recurrent:
            self.max_delay = 0
            self.register_buffer("delay_masks", None)
            self.register_buffer("delays", None)
            return
        if isinstance(delays, int) and not isinstance(delays, bool):
            if delays < 0:
                raise ValueError(f"delays must be >= 0 (steps), got {delays}")
            delays = torch.randint(0, delays + 1, (self.n_rec, self.n_rec), generator=gen)
        if not isinstance(delays, torch.Tensor) or delays.is_floating_point() or delays.dtype == torch.bool:
            raise TypeError("delays must be an int (max delay in steps) or an integer tensor [n_rec, n_rec]")
        _checks.tensor("delays", delays, rank=2, shape=(self.n_rec, self.n_rec))
        if bool((delays < 0).any()):
            raise ValueError(f"delays must be >= 0 steps, got minimum {int(delays.min())}")
        self.max_delay = int(delays.max())
        masks = torch.stack([(delays == d) for d in range(self.max_delay + 1)]).float()
        self.register_buffer("delays", delays.long())
        self.register_buffer("delay_masks", masks)

    # -- protocol --------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None, traces: bool = False) -> LIFState:
        self._masked_rec = None
        device = device or self.device
        dtype = dtype or self.dtype
        zeros = torch.zeros(batch_size, self.n_rec, device=device, dtype=dtype)
        history = tuple(zeros for _ in range(self.max_delay + 1)) if self.recurrent else ()
        zin = torch.zeros(batch_size, self.n_in, device=device, dtype=dtype) if traces else None
        return LIFState(zeros, zeros, zeros,
                        torch.zeros(batch_size, self.n_rec, device=device, dtype=torch.int32),
                        torch.zeros(batch_size, self.n_out, device=device, dtype=dtype),
                        history, zin, zeros if traces else None)

    def input_current(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w_in.t()

    def recurrent_weight(self) -> torch.Tensor:
        """W^rec with the autapse mask applied (what the dynamics use)."""
        return self.w_rec * self.rec_mask

    def _stepping_weight(self) -> torch.Tensor:
        """:meth:`recurrent_weight` for :meth:`step`, formed once per stepped run without a graph.

        The copy is reused while neither tensor is written in place (their
        version counters, which every in-place write such as an optimizer step
        or STDP's update bumps, are unchanged) and dropped at every run's start
        (``init_state``), so a write that bypasses the counter (through
        ``.data``) between runs is seen too.
        """
        if torch.is_grad_enabled() and self.w_rec.requires_grad:
            return self.recurrent_weight()
        key = (self.w_rec._version, self.rec_mask._version, self.w_rec.data_ptr(), self.rec_mask.data_ptr())
        if self._masked_rec is None or self._masked_rec[0] != key:
            self._masked_rec = (key, self.recurrent_weight().detach())
        return self._masked_rec[1]

    def recurrent_current(self, history: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Σ_i W^rec_ji z_i^{t-d_ji}: the delivered recurrent input."""
        w = self._stepping_weight()
        if self.max_delay == 0:
            return history[0] @ w.t()
        stacked = torch.stack(history)                      # [D+1, B, N]
        per_delay = torch.matmul(stacked, (w * self.delay_masks).transpose(1, 2))
        return per_delay.sum(0)

    def fused_available(self, traces: bool, grad: bool = True, monitors: tuple[Monitor, ...] = ()) -> bool:
        # delays need the spike ring, local rules the filtered traces, monitors the per-step
        # locals: all step by step; without autograd stepping is the lean path (memory flat in T)
        return grad and not monitors and self.max_delay == 0 and not traces

    def run_fused(self, x: torch.Tensor, state: LIFState,
                  monitors: tuple[Monitor, ...] = ()) -> tuple[torch.Tensor, LIFState, dict[str, torch.Tensor]]:
        """The whole run as one fused LIF sequence and one leaky readout scan (equal to stepping)."""
        spikes, end = lif_sequence(
            self.input_current(x), v_th=self.v_th, alpha=self.alpha, surrogate=self.surrogate,
            w_rec=self.recurrent_weight() if self.recurrent else None,
            beta=self.beta_vec if self.n_adaptive else None, rho=self.rho,
            n_refractory=self.n_refractory, state=LIFSequenceState(state.v, state.z, state.a, state.refractory))
        y = leaky_scan(spikes @ self.w_out.t() + self.b_out, state.y, self.kappa)
        history = (end.z,) if self.recurrent else ()
        return y, LIFState(end.v, end.z, end.a, end.refractory, y[-1], history, None, None), {}

    def step(self, x_t: torch.Tensor, state: LIFState, i_in: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, LIFState, LIFLocals]:
        if i_in is None:
            i_in = x_t @ self.w_in.t()
        current = i_in
        if self.recurrent:
            current = current + self.recurrent_current(state.history)
        if noise is not None:
            current = current + noise
        z_prev = state.z
        v = self.alpha * state.v + current - self.v_th * z_prev
        a = self.rho * state.a + z_prev
        scaled = (v - self.v_th - self.beta_vec * a) / self.v_th
        free = state.refractory == 0
        z = self.surrogate.spike(scaled)
        if self.n_refractory:
            z = z * free
            refractory = torch.where(z > 0, self.n_refractory - 1, (state.refractory - 1).clamp_(min=0))
        else:
            refractory = state.refractory
        y = self.kappa * state.y + z @ self.w_out.t() + self.b_out
        history = (z,) + state.history[:-1] if self.recurrent else ()
        with torch.no_grad():
            psi = self.surrogate.pseudo(scaled.detach()) / self.v_th
            if self.n_refractory:
                psi = psi * free
            zbar_in = zbar_rec = None
            if state.zbar_in is not None:
                zbar_in = self.alpha * state.zbar_in + x_t.detach()
                zbar_rec = self.alpha * state.zbar_rec + z_prev.detach()
        new_state = LIFState(v, z, a, refractory, y, history, zbar_in, zbar_rec)
        return y, new_state, LIFLocals(x_t, z_prev, zbar_in, zbar_rec, psi, v, z, a)
