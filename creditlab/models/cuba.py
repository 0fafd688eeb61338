"""The CUBA network: current-based LIF neurons with exponential synaptic currents.

Benchmark 2 of Brette et al. (2007), "Simulation of networks of spiking
neurons: a review of tools and strategies", J. Comput. Neurosci. 23:349,
with the parameters of Brian2's ``examples/CUBA.py``: N = 4000 neurons,
the first 3200 excitatory and the last 800 inhibitory, each ordered pair
(i, j) connected independently with probability p = 0.02 (autapses
included, as ``connect(p=…)`` does).  For neuron j, in volts and seconds:

    τ_m dv_j/dt = (g_e,j + g_i,j) − (v_j − E_l)       (not while refractory)
    τ_e dg_e,j/dt = −g_e,j,     g_e,j += w_e   on a spike of an excitatory i → j
    τ_i dg_i,j/dt = −g_i,j,     g_i,j += w_i   on a spike of an inhibitory i → j
    v_j > V_t  →  spike, v_j ← V_r, v_j held at V_r for t_ref

with τ_m = 20 ms, τ_e = 5 ms, τ_i = 10 ms, V_t = −50 mV, V_r = −60 mV,
E_l = −49 mV, w_e = 60·0.27/10 mV, w_i = −20·4.5/10 mV, t_ref = 5 ms, and v
initialised uniformly in [V_r, V_t) (arguments ``tau_m, tau_e, tau_i, v_th,
v_reset, v_rest, w_exc, w_inh, t_ref``).

One step of length h = dt integrates the linear subthreshold system exactly
(the propagator of Rotter & Diesmann 1999, what Brian2's ``method="linear"``
computes) and then follows Brian2's schedule — state update, threshold,
synaptic delivery, reset:

    v ← E_l + α_m (v − E_l) + k_e g_e + k_i g_i        (v ← V_r while refractory)
    g_e ← α_e g_e,   g_i ← α_i g_i
    z_j = [v_j > V_t];   g += Σ_i z_i W_i·;   v_j ← V_r where z_j

with α_x = exp(−h/τ_x) and k_x = τ_x/(τ_x − τ_m)·(α_x − α_m) (k_x = (h/τ_m) α_m
when τ_x = τ_m).  A spike delivered in step n therefore changes v from step
n + 1 on.  A neuron that spiked at step s is refractory until step
s + n_ref, n_ref = round(t_ref/dt), as Brian2 counts it.

The synapses are a :class:`~creditlab.models.sparse.SparseConnectivity`:
event-driven delivery (spikes × fan-out) for sparse networks, the dense
matrix product as the reference — ``delivery`` picks one, ``"auto"`` by
density.  On the CPU, a run with event delivery that records nothing but
spikes and outputs goes through a compiled loop (:mod:`creditlab.native`,
``Simulator(fast=False)`` or ``CREDITLAB_NATIVE=0`` to step in PyTorch):
the same arithmetic in the same order, about as fast as Brian2's
cpp_standalone target.  On CUDA the same run is one Triton kernel with one
program per trial (:func:`~creditlab.models.fused_triton.cuba_run`), which
adds each spike's weights in the CPU loop's order.  The model is batched
over independent trials: every trial has the same synapses and its own
initial membrane potentials.  It has no input
(``n_in = 0``; the input ``[T, B, 0]`` only sets the number of steps and
trials) and no trainable parameters; its output ``[B, 1]`` is the number of
neurons that spiked in the step (population rate = output / (N·dt)).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .. import _checks, native
from ..simulator.monitors import ALIASES, Monitor, monitored_batch, record_sequences
from . import fused_triton
from .base import Model
from .sparse import DELIVERY_MODES, SparseConnectivity


class CUBAState(NamedTuple):
    vg: torch.Tensor          # [B, 3, N]: currents g_e, g_i and membrane v (volts)
    free_at: torch.Tensor     # first step at which each neuron integrates again [B, N] (int64)
    t: int = 0                # index of the next step

    @property
    def v(self) -> torch.Tensor:
        return self.vg[:, 2]


class CUBALocals(NamedTuple):
    v: torch.Tensor    # membrane potential after reset [B, N]
    ge: torch.Tensor   # excitatory synaptic current after delivery [B, N]
    gi: torch.Tensor   # inhibitory synaptic current after delivery [B, N]
    z: torch.Tensor    # spikes of this step [B, N] (bool)


def propagator(dt: float, tau_m: float, tau_e: float, tau_i: float) -> torch.Tensor:
    """The exact one-step map of (g_e, g_i, v − E_l): a 3 × 3 lower-triangular matrix (float64)."""
    alpha_m = math.exp(-dt / tau_m)

    def coupling(tau: float) -> float:
        alpha = math.exp(-dt / tau)
        if math.isclose(tau, tau_m, rel_tol=1e-12):
            return dt / tau_m * alpha_m
        return tau / (tau - tau_m) * (alpha - alpha_m)

    return torch.tensor([[math.exp(-dt / tau_e), 0.0, 0.0],
                         [0.0, math.exp(-dt / tau_i), 0.0],
                         [coupling(tau_e), coupling(tau_i), alpha_m]], dtype=torch.float64)


def random_synapses(n_exc: int, n_inh: int, p: float, w_exc: float, w_inh: float,
                    autapses: bool, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``pre, post, weight``: each ordered pair connected with probability p (row by row, one draw each)."""
    n = n_exc + n_inh
    pre_list, post_list = [], []
    # row blocks bound the temporary uniform draws to ~4 M numbers
    rows = max(1, (1 << 22) // n)
    for start in range(0, n, rows):
        block = torch.rand(min(rows, n - start), n, generator=gen) < p
        if not autapses:
            idx = torch.arange(block.shape[0])
            block[idx, start + idx] = False
        pre, post = block.nonzero(as_tuple=True)
        pre_list.append(pre + start)
        post_list.append(post)
    pre, post = torch.cat(pre_list), torch.cat(post_list)
    weight = torch.where(pre < n_exc, w_exc, w_inh).to(torch.float64)
    return pre, post, weight


class CUBA(Model):
    """Brette et al.'s CUBA network, batched over independent trials, with event-driven synapses.

    Times in seconds, voltages in volts.  ``p`` must be in (0, 1];
    ``w_exc`` ≥ 0, ``w_inh`` ≤ 0; ``v_reset`` < ``v_th``.  ``delivery`` is
    ``"auto"`` (events for sparse connectivity), ``"event"`` or ``"dense"``.
    ``seed`` fixes the synapses and the initial membrane potentials.
    ``dtype`` (default: torch's default) is the precision of the state and
    constants; build with ``dtype=torch.float64`` for double precision, since
    ``.double()`` after construction keeps constants rounded to float32.
    """

    kind = "simulation"

    def __init__(self, n_exc: int = 3200, n_inh: int = 800, p: float = 0.02,
                 tau_m: float = 20e-3, tau_e: float = 5e-3, tau_i: float = 10e-3,
                 v_th: float = -50e-3, v_reset: float = -60e-3, v_rest: float = -49e-3,
                 w_exc: float = 60 * 0.27 / 10 * 1e-3, w_inh: float = -20 * 4.5 / 10 * 1e-3,
                 t_ref: float = 5e-3, dt: float = 0.1e-3, autapses: bool = True,
                 delivery: str = "auto", seed: int | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.n_exc = _checks.positive_int("n_exc", n_exc)
        self.n_inh = _checks.positive_int("n_inh", n_inh, minimum=0)
        self.n_units = self.n_exc + self.n_inh
        self.n_in, self.n_out = 0, 1
        self.p = _checks.in_range("p", p, 0.0, 1.0)
        if self.p == 0.0:
            raise ValueError("p must be in (0, 1]; p = 0 leaves the network without synapses")
        self.dt = _checks.positive("dt", dt)
        tau_m = _checks.positive("tau_m", tau_m)
        tau_e = _checks.positive("tau_e", tau_e)
        tau_i = _checks.positive("tau_i", tau_i)
        self.v_th = _finite("v_th", v_th)
        self.v_reset = _finite("v_reset", v_reset)
        self.v_rest = _finite("v_rest", v_rest)
        if not self.v_reset < self.v_th:
            raise ValueError(f"v_reset must be below v_th, got v_reset={v_reset} and v_th={v_th}")
        self.w_exc = _checks.non_negative("w_exc", w_exc)
        if isinstance(w_inh, bool) or not isinstance(w_inh, (int, float)) or not math.isfinite(w_inh):
            raise TypeError(f"w_inh must be a finite number <= 0, got {w_inh!r}")
        if w_inh > 0:
            raise ValueError(f"w_inh must be <= 0 (inhibitory), got {w_inh}")
        self.w_inh = float(w_inh)
        self.n_refractory = int(round(_checks.non_negative("t_ref", t_ref) / self.dt))
        _checks.boolean("autapses", autapses)
        _checks.choice("delivery", delivery, DELIVERY_MODES)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        if seed is None:
            # drawn from torch's global generator, so torch.manual_seed makes an unseeded model reproducible
            seed = int(torch.randint(2**31 - 1, ()))
        self.seed = _checks.positive_int("seed", seed, minimum=0)

        gen = torch.Generator().manual_seed(self.seed)
        pre, post, weight = random_synapses(self.n_exc, self.n_inh, self.p, self.w_exc, self.w_inh,
                                            autapses, gen)
        self.register_buffer("pre", pre)
        self.register_buffer("post", post)
        # a synapse adds to g_e (state column post) or g_i (column N + post) of a trial's [3, N] state
        channel_post = post + self.n_units * (pre >= self.n_exc).long()
        self.synapses = SparseConnectivity(pre, channel_post, weight.to(dtype),
                                           self.n_units, 2 * self.n_units, delivery)
        self._gen_state = gen.get_state()  # initial potentials continue the seeded stream
        self.register_buffer("propagator", propagator(self.dt, tau_m, tau_e, tau_i).to(dtype))
        self.register_buffer("offset", torch.tensor([[0.0], [0.0], [self.v_rest * (1 - math.exp(-self.dt / tau_m))]],
                                                    dtype=dtype))

    @property
    def delivery(self) -> str:
        """The delivery path in use: ``"event"`` or ``"dense"``."""
        return self.synapses.delivery

    @property
    def device(self) -> torch.device:
        return self.propagator.device

    @property
    def dtype(self) -> torch.dtype:
        return self.propagator.dtype

    def connections(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``pre, post, weight`` (volts) of every synapse, e.g. to build the same network in Brian2."""
        weight = torch.where(self.pre < self.n_exc, self.w_exc, self.w_inh).to(torch.float64)
        return self.pre, self.post, weight

    # -- protocol --------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None, traces: bool = False) -> CUBAState:
        """v uniform in [V_r, V_t) (trial b's draw is the same whatever the batch size), g = 0."""
        _checks.positive_int("batch_size", batch_size)
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else dtype
        if dtype != self.dtype or device.type != self.device.type:
            raise TypeError(f"the state must have the model's dtype and device ({self.dtype}, {self.device}), "
                            f"got ({dtype}, {device}); convert the model with model.to(...)")
        gen = torch.Generator().manual_seed(0)
        gen.set_state(self._gen_state)
        uniform = torch.rand(batch_size, self.n_units, generator=gen, dtype=torch.float64)
        vg = torch.zeros(batch_size, 3, self.n_units, dtype=dtype, device=device)
        vg[:, 2] = (self.v_reset + uniform * (self.v_th - self.v_reset)).to(dtype)
        free_at = torch.zeros(batch_size, self.n_units, dtype=torch.int64, device=device)
        return CUBAState(vg, free_at, 0)

    def input_current(self, x: torch.Tensor) -> torch.Tensor:
        # no input: a zero-stride view stands for T steps of zero drive without allocating them
        return x.new_zeros(()).expand(x.shape[0], x.shape[1], self.n_units)

    def fused_available(self, traces: bool, grad: bool = True, monitors: tuple[Monitor, ...] = ()) -> bool:
        # the compiled loop (CPU) and the Triton kernel (CUDA) deliver events and can record spikes and outputs
        return (self.delivery == "event" and not traces
                and all(ALIASES.get(m.name, m.name) in ("z", "y") for m in monitors)
                and (fused_triton.cuba_usable(self.propagator, self.n_units)
                     if self.propagator.is_cuda else native.supports(self.propagator)))

    def run_fused(self, x: torch.Tensor, state: CUBAState,
                  monitors: tuple[Monitor, ...] = ()) -> tuple[torch.Tensor, CUBAState, dict[str, torch.Tensor]]:
        """The whole run in one call: the compiled CPU loop (:mod:`creditlab.native`), the same
        spikes as stepping, or on CUDA the Triton kernel (:func:`~creditlab.models.fused_triton.cuba_run`),
        one program per trial."""
        n_steps, batch = x.shape[0], x.shape[1]
        vg, free_at = state.vg.contiguous().clone(), state.free_at.contiguous().clone()
        rows = monitored_batch(monitors, ("spikes", "z"), batch)
        run = fused_triton.cuba_run if vg.is_cuda else native.cuba_run
        counts, spikes = run(
            n_steps, state.t, self.propagator, self.offset.view(-1), self.v_th, self.v_reset,
            self.n_refractory, self.synapses.targets, self.synapses.weights, vg, free_at, rows)
        outputs = counts.unsqueeze(-1)
        sequences = {"y": (outputs, list(range(batch)))}
        if spikes is not None:
            sequences["z"] = (spikes, rows)
        return outputs, CUBAState(vg, free_at, state.t + n_steps), record_sequences(monitors, sequences)

    def step(self, x_t: torch.Tensor, state: CUBAState, i_in: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, CUBAState, CUBALocals]:
        """One step; ``noise [B, N]`` (volts) is added to v's update of non-refractory neurons."""
        batch = state.vg.shape[0]
        vg = torch.baddbmm(self.offset, self.propagator.expand(batch, 3, 3), state.vg)
        v = vg[:, 2]
        if noise is not None:
            v.add_(noise)
        free_at = state.free_at
        if self.n_refractory:
            v.masked_fill_(free_at > state.t, self.v_reset)
        z = v > self.v_th
        self.synapses.deliver(vg.view(batch, -1), z)
        v.masked_fill_(z, self.v_reset)
        if self.n_refractory:
            free_at = free_at.masked_fill(z, state.t + self.n_refractory)
        y = z.sum(1, keepdim=True, dtype=vg.dtype)
        return y, CUBAState(vg, free_at, state.t + 1), CUBALocals(v, vg[:, 0], vg[:, 1], z)


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a finite number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)
