"""Feed-forward network of spike-response-model neurons with delayed synaptic terminals.

The neuron of SpikeProp (Bohte, Kok & La Poutré 2002, Neurocomputing
48:17–37, eqs. 1–4).  Neuron j in layer l receives, from every neuron i of
layer l − 1, m synaptic terminals with delays d^k and weights w_ij^k:

    y_i^k(t) = ε(t − t_i − d^k)                                    (eq. 2)
    x_j(t)   = Σ_i Σ_k w_ij^k y_i^k(t)                              (eq. 3)
    ε(s)     = (s/τ) e^{1 − s/τ} for s > 0, 0 otherwise             (eq. 4)

and fires once, at its first threshold crossing x_j(t_j) = ϑ; a neuron that
never crosses stays silent (t_j = ∞) and contributes nothing downstream.

On the engine's clock
---------------------
Step n samples the membrane at t_n = n·dt.  The input ``x [T, B, n_in]`` is a
spike raster: ``x[n, b, i] = 1`` means input i fires at t_n (at most one spike
per input and sample; ``spike_raster`` builds it from spike times).  Because
every term of eq. 3 is a closed-form kernel of a spike time, each step
evaluates x_j(t_n) exactly from the spike times known so far, layer after
layer.  The first crossing is found between the two samples that bracket ϑ,
x_j(t_{n−1}) < ϑ ≤ x_j(t_n), by linear interpolation:

    t_j = t_{n−1} + dt (ϑ − x_j(t_{n−1})) / (x_j(t_n) − x_j(t_{n−1})).

So t_j is the crossing of the piecewise-linear interpolant x̃_j of the
sampled membrane: a continuous, differentiable function of the weights and
of the presynaptic spike times while no spike appears, disappears or
changes its bracketing step; it differs from the continuous-time crossing by
O(dt²) x''.  The state carries t_{n−1} of each neuron's crossing step
(``brackets``), from which SpikeProp evaluates ∂t_j/∂w in closed form.

The output at step n is min(t_j, t_n) for each output neuron: its first-spike
time once it has fired, otherwise the time reached so far (it fires no
earlier).  The last step's output is thus the first-spike time, with a
silent neuron scored at the end of the window.

Times are in seconds, like every creditlab clock (Bohte's XOR: τ = 7 ms,
delays 1…16 ms).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn

from .. import _checks
from .base import Model

#: Bohte's XOR terminals: 16 delays of 1, 2, …, 16 ms
DEFAULT_DELAYS = tuple(k * 1e-3 for k in range(1, 17))


class SRMState(NamedTuple):
    step: torch.Tensor                   # index n of the next sample (int64 scalar)
    spike_times: tuple[torch.Tensor, ...]  # per layer, input first: [B, n_l], ∞ while silent
    brackets: tuple[torch.Tensor, ...]     # per non-input layer: t_{n−1} of the crossing step, ∞ while silent
    membrane: tuple[torch.Tensor, ...]     # per non-input layer: x_j at the last sample


class SRMLocals(NamedTuple):
    """What a rule may read after a step; ``v``, ``z`` and ``spike_times`` span all non-input neurons."""
    v: torch.Tensor              # membrane x_j(t_n) [B, n_units]
    z: torch.Tensor              # 1 where the neuron fired inside this step [B, n_units]
    spike_times: torch.Tensor    # first-spike times so far [B, n_units], ∞ while silent
    layer_times: tuple[torch.Tensor, ...]  # per layer, input first
    brackets: tuple[torch.Tensor, ...]     # per non-input layer


def srm_kernel(s: torch.Tensor, tau: float) -> torch.Tensor:
    """ε(s) = (s/τ) e^{1 − s/τ} for s > 0, else 0 (finite gradient everywhere, −∞ allowed)."""
    # clamping sends s ≤ 0, and the −∞ of a silent presynaptic neuron, to ε = 0·e = 0
    u = s.clamp(min=0.0) / tau
    return u * torch.exp(1.0 - u)


def srm_kernel_derivative(s: torch.Tensor, tau: float) -> torch.Tensor:
    """dε/ds = (1/τ)(1 − s/τ) e^{1 − s/τ} for s > 0, else 0."""
    u = s.clamp(min=0.0) / tau
    return (s > 0).to(s.dtype) * (1.0 - u) * torch.exp(1.0 - u) / tau


def spike_raster(times: torch.Tensor, n_steps: int, dt: float) -> torch.Tensor:
    """Raster ``[n_steps, B, n]`` with a 1 at step round(t/dt) for each finite time in ``times [B, n]``.

    ``∞`` (or NaN) means the input stays silent.  Times must lie in [0, (n_steps − 1)·dt].
    """
    _checks.tensor("times", times, rank=2, finite=False)
    n_steps = _checks.positive_int("n_steps", n_steps)
    dt = _checks.positive("dt", dt)
    fires = torch.isfinite(times)
    index = torch.round(torch.where(fires, times, torch.zeros_like(times)) / dt).long()
    if fires.any() and (int(index[fires].min()) < 0 or int(index[fires].max()) >= n_steps):
        raise ValueError(f"times must lie in [0, {(n_steps - 1) * dt:g}] s to fit {n_steps} steps of "
                         f"dt={dt:g} s, got range [{float(times[fires].min()):g}, {float(times[fires].max()):g}]")
    raster = times.new_zeros(n_steps, *times.shape)
    raster.scatter_(0, index[None], fires[None].to(times.dtype))
    return raster


class SRM(Model):
    """Layers ``sizes = [n_in, h_1, …, n_out]`` of SRM neurons, all-to-all with m delayed terminals.

    ``weights[l]`` has shape ``[n_post, n_pre, m]`` (terminal k of connection i → j).
    ``delays`` (seconds, ≥ 0) are shared by every connection; ``n_terminals``
    may be given instead (delays 1, 2, …, m ms) or as a check on ``delays``.
    Initial weights are drawn uniformly from ``weight_range`` in units of
    ϑ / (n_pre · m): with all inputs firing together and weights of mean c
    units, the membrane peaks near 0.8·c·ϑ for τ = 7 ms and delays 1…16 ms,
    so the default (mean 2) fires; sparse inputs (population codes) need a
    wider range, or the network starts silent and SpikeProp has no gradient.
    The last ``inhibitory`` neurons of each hidden layer start with negative
    outgoing weights (Bohte's XOR net had one inhibitory hidden neuron).
    """

    kind = "spike-timing"

    def __init__(self, sizes: Sequence[int], delays: Sequence[float] | None = None,
                 n_terminals: int | None = None, tau: float = 7e-3, threshold: float = 1.0,
                 dt: float = 1e-4, weight_range: tuple[float, float] = (0.0, 4.0),
                 inhibitory: int = 0, seed: int | None = None) -> None:
        super().__init__()
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) < 2:
            raise ValueError(f"sizes must list at least two layer sizes [n_in, …, n_out], got {sizes!r}")
        self.sizes = [_checks.positive_int(f"sizes[{i}]", s) for i, s in enumerate(sizes)]
        self.delays = check_delays(delays, n_terminals)
        self.tau = _checks.positive("tau", tau)
        self.threshold = _checks.positive("threshold", threshold)
        self.dt = _checks.positive("dt", dt)
        low, high = check_weight_range(weight_range)
        self.inhibitory = _checks.positive_int("inhibitory", inhibitory, minimum=0)
        if self.inhibitory and (len(self.sizes) < 3 or self.inhibitory > min(self.sizes[1:-1])):
            raise ValueError(f"inhibitory must be at most the smallest hidden layer size "
                             f"({min(self.sizes[1:-1]) if len(self.sizes) > 2 else 0} for sizes {self.sizes}), "
                             f"got {self.inhibitory}")
        self.n_in, self.n_out = self.sizes[0], self.sizes[-1]
        self.n_units = sum(self.sizes[1:])
        self.register_buffer("delay", torch.tensor(self.delays, dtype=torch.float32))
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.weights = nn.ParameterList(self._initial_weights(low, high))

    @property
    def n_terminals(self) -> int:
        return len(self.delays)

    def _initial_weights(self, low: float, high: float) -> list[nn.Parameter]:
        weights = []
        for index, (n_pre, n_post) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            scale = self.threshold / (n_pre * self.n_terminals)
            w = torch.empty(n_post, n_pre, self.n_terminals).uniform_(low * scale, high * scale)
            if index > 0 and self.inhibitory:
                # the last `inhibitory` neurons of the previous hidden layer inhibit their targets
                w[:, -self.inhibitory:] = -w[:, -self.inhibitory:].abs()
            weights.append(nn.Parameter(w))
        return weights

    # -- protocol --------------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None, traces: bool = False) -> SRMState:
        batch_size = _checks.positive_int("batch_size", batch_size)
        device = self.device if device is None else device
        dtype = self.dtype if dtype is None else dtype
        silent = [torch.full((batch_size, n), math.inf, device=device, dtype=dtype) for n in self.sizes]
        membrane = tuple(torch.zeros(batch_size, n, device=device, dtype=dtype) for n in self.sizes[1:])
        return SRMState(torch.zeros((), dtype=torch.long, device=device), tuple(silent),
                        tuple(silent[1:]), membrane)

    def input_current(self, x: torch.Tensor) -> torch.Tensor:
        """The raster itself: an SRM neuron integrates spike times, not currents."""
        return x

    def check_input(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """A ``[T, B, n_in]`` spike raster: entries 0 or 1, at most one spike per input and sample."""
        super().check_input(x, name)
        if not bool(((x == 0) | (x == 1)).all()):
            raise ValueError(f"{name} must be a spike raster of 0s and 1s (SRM inputs are spike times; "
                             "build one with creditlab.models.srm.spike_raster(times, n_steps, dt))")
        if bool((x.sum(0) > 1).any()):
            raise ValueError(f"{name} must hold at most one spike per input and sample "
                             "(SRM neurons see only each input's first spike)")
        return x

    def membrane(self, t: torch.Tensor, pre_times: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x_j(t) = Σ_i Σ_k w_ij^k ε(t − t_i − d^k) for ``pre_times [B, n_pre]`` → ``[B, n_post]``."""
        s = t - (pre_times[:, :, None] + self.delay.to(pre_times.dtype))
        return srm_kernel(s, self.tau).flatten(1) @ weight.flatten(1).T

    def step(self, x_t: torch.Tensor, state: SRMState, i_in: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, SRMState, SRMLocals]:
        """Sample every membrane at t_n and record the first threshold crossings inside (t_{n−1}, t_n]."""
        if noise is not None:
            raise ValueError("noise is not supported by SRM: a spike-time neuron has no input current to perturb")
        spikes = x_t if i_in is None else i_in
        t_now = state.step.to(spikes.dtype) * self.dt
        t_prev = t_now - self.dt
        inputs = torch.where((spikes > 0) & torch.isinf(state.spike_times[0]), t_now, state.spike_times[0])
        times, brackets, membranes, fired_now = [inputs], [], [], []
        for weight, t_old, bracket, u_prev in zip(self.weights, state.spike_times[1:],
                                                  state.brackets, state.membrane):
            u_now = self.membrane(t_now, times[-1], weight)
            crossing = torch.isinf(t_old) & (u_prev < self.threshold) & (u_now >= self.threshold)
            # a non-crossing entry may have u_now == u_prev; its quotient is discarded
            rise = torch.where(crossing, u_now - u_prev, torch.ones_like(u_now))
            t_cross = t_prev + self.dt * (self.threshold - u_prev) / rise
            times.append(torch.where(crossing, t_cross, t_old))
            brackets.append(torch.where(crossing, t_prev, bracket))
            membranes.append(u_now)
            fired_now.append(crossing.to(u_now.dtype))
        out = torch.minimum(times[-1], t_now)
        new_state = SRMState(state.step + 1, tuple(times), tuple(brackets), tuple(membranes))
        local = SRMLocals(torch.cat(membranes, -1), torch.cat(fired_now, -1), torch.cat(times[1:], -1),
                          tuple(times), tuple(brackets))
        return out, new_state, local


def check_delays(delays: Sequence[float] | None, n_terminals: int | None) -> tuple[float, ...]:
    """The terminal delays (seconds) from ``delays`` and/or ``n_terminals``, checked against each other."""
    if n_terminals is not None:
        n_terminals = _checks.positive_int("n_terminals", n_terminals)
    if delays is None:
        return tuple(k * 1e-3 for k in range(1, (n_terminals or len(DEFAULT_DELAYS)) + 1))
    if isinstance(delays, torch.Tensor):
        delays = delays.tolist()
    if isinstance(delays, (str, bytes)) or not isinstance(delays, Sequence) or len(delays) == 0:
        raise ValueError(f"delays must be a non-empty sequence of delays in seconds (one per terminal), got {delays!r}")
    checked = tuple(_checks.non_negative(f"delays[{k}]", d) for k, d in enumerate(delays))
    if n_terminals is not None and n_terminals != len(checked):
        raise ValueError(f"n_terminals={n_terminals} does not match the {len(checked)} delays given; "
                         "give one delay per terminal (or only one of delays, n_terminals)")
    return checked


def check_weight_range(weight_range: tuple[float, float]) -> tuple[float, float]:
    """``(low, high)`` with finite numbers, low < high."""
    if not isinstance(weight_range, (tuple, list)) or len(weight_range) != 2:
        raise ValueError(f"weight_range must be a pair (low, high), got {weight_range!r}")
    low, high = (_checks.in_range(f"weight_range[{i}]", v, -math.inf, math.inf) for i, v in enumerate(weight_range))
    if not low < high:
        raise ValueError(f"weight_range must have low < high, got {weight_range!r}")
    return low, high
