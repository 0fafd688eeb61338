"""Liquid-state machine: a spatially wired LIF reservoir with a ridge readout
(Maass, Natschläger & Markram 2002, Neural Comput. 14:2531, "Real-time
computing without stable states").

Neurons sit on the integer points of a 3-D grid (15 × 3 × 3 = 135 by
default); a random 20 % are inhibitory.  A synapse from neuron a to neuron b
(a ≠ b) exists with probability

    P(a → b) = C_{type(a) type(b)} · exp(−(D(a, b) / λ)²)

with D the Euclidean grid distance and C_EE = 0.3, C_EI = 0.2, C_IE = 0.4,
C_II = 0.1 (first letter: presynaptic type).  Its weight is

    W_ba = sign(a) · w,   w ~ Gamma(k = 4, θ = A_{type(a) type(b)} / 4)

(mean A, SD A/2: Gamma-distributed as in the paper, with the CV fixed at
0.5 so that it is drawn exactly from the model's seeded generator),
sign(a) = +1 for excitatory and −1 for inhibitory presynaptic neurons,
with A in Maass et al.'s ratios
EE : EI : IE : II = 30 : 60 : 19 : 19, scaled so that A_EE = ``weight_scale``
(in units of the firing threshold).  Each input channel projects onto a
random ``input_fraction`` of the neurons with Gamma weights of mean
``input_scale`` onto excitatory and ``input_scale``/2 onto inhibitory
neurons (the paper's 18 : 9).  Synaptic transmission takes ``delays``
seconds per pair type (the paper: 1.5 ms EE, 0.8 ms otherwise); a delay of d
seconds arrives round(d / dt) steps later, so it must be at least one step.

The neurons are the LIF neurons of :class:`~creditlab.models.LIF` (membrane
τ_m = 30 ms as in the paper, reset by subtraction, refractory period
``t_ref``), stepped by that model's own ``step`` with its per-synapse delay
queue, plus a constant ``background`` drive that holds a silent membrane at
``background · v_th`` (the paper's background current holds it at 0.9 θ).
Synapses are current pulses (no synaptic time constant, no short-term
plasticity — the paper's dynamic synapses are not modelled).

The readout sees the spikes through an exponential filter,

    r^{t+1} = κ r^t + z^{t+1},   κ = exp(−dt / τ_readout)   (τ_readout = 30 ms)

which is the LIF model's leaky readout with W_out = I and no bias, and is
linear in [1; r]:  y^t = W_out [1; r^t].  W_out is fit in closed form by ridge
regression, W_out = Y Xᵀ (X Xᵀ + β I)⁻¹, either to targets ``[T, B, n_out]``
or to class labels ``[B]`` (one-hot targets over the last ``window`` steps);
a trial is classified by the argmax of the readout averaged over that window.
Everything is batched over independent trials and runs on the module's device.
"""
from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import torch
from torch import nn

from .. import _checks
from .base import Model
from .lif import LIF, LIFState

PAIR_TYPES = ("EE", "EI", "IE", "II")
#: Maass et al. 2002: connection probability scale C per (pre, post) type
MAASS_CONNECTIVITY = {"EE": 0.3, "EI": 0.2, "IE": 0.4, "II": 0.1}
#: Maass et al. 2002: mean synaptic strength A per (pre, post) type, relative to EE
MAASS_STRENGTH = {"EE": 1.0, "EI": 60 / 30, "IE": 19 / 30, "II": 19 / 30}
#: Maass et al. 2002: transmission delays in seconds per (pre, post) type
MAASS_DELAYS = {"EE": 1.5e-3, "EI": 0.8e-3, "IE": 0.8e-3, "II": 0.8e-3}
#: shape of the Gamma distribution of weights: CV = 1/√k = 0.5; an integer k is a sum of k exponentials
GAMMA_SHAPE = 4


class LiquidLocals(NamedTuple):
    x: torch.Tensor         # input x^{t+1} [B, n_in]
    pre_rec: torch.Tensor   # recurrent spikes of the previous step [B, N]
    v: torch.Tensor         # membrane potential [B, N]
    z: torch.Tensor         # spikes [B, N]
    r: torch.Tensor         # low-pass filtered spikes the readout sees [B, N]


def _pair_values(name: str, values: float | Mapping[str, float], check) -> dict[str, float]:
    """A value per pair type from one number or a mapping with exactly the keys EE, EI, IE, II."""
    if isinstance(values, Mapping):
        if set(values) != set(PAIR_TYPES):
            raise ValueError(f"{name} must map exactly the pair types {', '.join(PAIR_TYPES)} "
                             f"(presynaptic type first), got keys {sorted(values)}")
        return {k: check(f"{name}[{k!r}]", values[k]) for k in PAIR_TYPES}
    value = check(name, values)
    return {k: value for k in PAIR_TYPES}


def _probability(name: str, value: float) -> float:
    return _checks.in_range(name, value, 0.0, 1.0)


def grid_positions(grid: tuple[int, int, int]) -> torch.Tensor:
    """Integer coordinates ``[prod(grid), 3]`` of the points of a 3-D grid."""
    axes = [torch.arange(n, dtype=torch.float64) for n in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def _gamma(mean: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gamma(k = 4, θ = mean / 4) samples: a sum of four exponentials of mean θ."""
    uniform = torch.rand(GAMMA_SHAPE, *mean.shape, generator=gen, dtype=torch.float64)
    return -torch.log1p(-uniform).sum(0) * (mean / GAMMA_SHAPE)


class LiquidState(Model):
    """LIF liquid on a 3-D grid with distance-dependent wiring and a ridge readout.

    ``n_exc``/``n_inh`` default to an 80/20 split of the grid's points; given,
    they must add up to ``prod(grid)``.  ``lambda_`` (grid units) sets the
    wiring's reach; ``delays`` is ``None`` (every synapse one step), seconds
    for all pair types, or a mapping ``{"EE": …, "EI": …, "IE": …, "II": …}``
    (``MAASS_DELAYS`` needs ``dt`` ≤ 0.8 ms).  Times are in seconds.
    """

    kind = "reservoir"

    def __init__(self, n_in: int, n_out: int = 2, grid: tuple[int, int, int] = (15, 3, 3),
                 n_exc: int | None = None, n_inh: int | None = None, lambda_: float = 2.0,
                 connectivity: Mapping[str, float] = MAASS_CONNECTIVITY, weight_scale: float = 0.2,
                 input_scale: float = 0.8, input_fraction: float = 0.3, background: float = 0.0,
                 delays: float | Mapping[str, float] | None = None, tau_m: float = 30e-3,
                 t_ref: float = 2e-3, tau_readout: float = 30e-3, dt: float = 1e-3,
                 seed: int | None = None) -> None:
        super().__init__()
        self.n_in = _checks.positive_int("n_in", n_in)
        self.n_out = _checks.positive_int("n_out", n_out)
        self.grid = self._check_grid(grid)
        self.n_units = math.prod(self.grid)
        self.n_exc, self.n_inh = self._split(n_exc, n_inh)
        self.lambda_ = _checks.positive("lambda_", lambda_)
        self.connectivity = _pair_values("connectivity", connectivity, _probability)
        self.weight_scale = _checks.positive("weight_scale", weight_scale)
        self.input_scale = _checks.positive("input_scale", input_scale)
        self.input_fraction = _checks.in_range("input_fraction", input_fraction, 0.0, 1.0)
        if self.input_fraction == 0.0:
            raise ValueError("input_fraction must be in (0, 1]; 0 leaves the liquid without input")
        self.background = _checks.non_negative("background", background)
        self.dt = _checks.positive("dt", dt)
        self.tau_readout = _checks.positive("tau_readout", tau_readout)
        gen = torch.Generator().manual_seed(seed if seed is not None else int(torch.seed() % 2**31))

        # Neurons get random grid points; excitatory neurons come first so that
        # populations are contiguous in rasters.
        positions = grid_positions(self.grid)[torch.randperm(self.n_units, generator=gen)]
        self.register_buffer("positions", positions.to(torch.get_default_dtype()))
        w_rec = self._recurrent_weights(positions, gen)
        w_in = self._input_weights(gen)
        steps = self._delay_steps(delays)
        self.core = LIF(n_in, self.n_units, self.n_units, dt=self.dt, tau_m=tau_m, t_ref=t_ref,
                        tau_out=self.tau_readout, delays=steps, seed=seed)
        with torch.no_grad():
            self.core.w_rec.copy_(w_rec)
            self.core.w_in.copy_(w_in)
            self.core.w_out.copy_(torch.eye(self.n_units))   # the leaky readout becomes the filter r
            self.core.b_out.zero_()
        self.core.requires_grad_(False)
        self.w_out = nn.Parameter(torch.zeros(self.n_out, 1 + self.n_units))

    # -- construction ------------------------------------------------------------
    @staticmethod
    def _check_grid(grid: tuple[int, int, int]) -> tuple[int, int, int]:
        if not isinstance(grid, (tuple, list)) or len(grid) != 3:
            raise ValueError(f"grid must be three positive ints (x, y, z), got {grid!r}")
        return tuple(_checks.positive_int(f"grid[{i}]", n) for i, n in enumerate(grid))

    def _split(self, n_exc: int | None, n_inh: int | None) -> tuple[int, int]:
        n = self.n_units
        if n_exc is None and n_inh is None:
            n_inh = round(0.2 * n)
        if n_inh is not None:
            n_inh = _checks.positive_int("n_inh", n_inh, minimum=0)
        n_exc = n - n_inh if n_exc is None else _checks.positive_int("n_exc", n_exc, minimum=0)
        n_inh = n - n_exc if n_inh is None else n_inh
        if n_exc < 0 or n_inh < 0 or n_exc + n_inh != n:
            raise ValueError(f"n_exc + n_inh must equal the {n} points of grid={self.grid} (both >= 0), "
                             f"got n_exc={n_exc}, n_inh={n_inh}")
        return n_exc, n_inh

    def _types(self) -> torch.Tensor:
        """1 for excitatory, 0 for inhibitory neurons ``[N]``."""
        return (torch.arange(self.n_units) < self.n_exc).long()

    def _pair_table(self, values: Mapping[str, float]) -> torch.Tensor:
        """``[post, pre]`` matrix of a per-pair-type value (the weight matrix's layout)."""
        exc = self._types()
        table = torch.tensor([[values["II"], values["EI"]], [values["IE"], values["EE"]]],
                             dtype=torch.float64)        # [post type, pre type], 1 = E
        return table[exc[:, None], exc[None, :]]

    def _recurrent_weights(self, positions: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        distance = torch.cdist(positions, positions)
        probability = self._pair_table(self.connectivity) * torch.exp(-(distance / self.lambda_) ** 2)
        probability.fill_diagonal_(0.0)
        connected = torch.rand(probability.shape, generator=gen, dtype=torch.float64) < probability
        if not bool(connected.any()):
            raise ValueError(f"lambda_={self.lambda_} with connectivity={self.connectivity} draws no "
                             f"recurrent synapse among the {self.n_units} neurons; raise lambda_ or connectivity")
        strength = self._pair_table(MAASS_STRENGTH) * self.weight_scale
        sign = torch.where(self._types().bool(), 1.0, -1.0).double()[None, :]   # by presynaptic type
        return sign * _gamma(strength, gen) * connected

    def _input_weights(self, gen: torch.Generator) -> torch.Tensor:
        mean = torch.where(self._types().bool(), self.input_scale, self.input_scale / 2).double()
        mean = mean[:, None].expand(self.n_units, self.n_in)
        projected = torch.rand(mean.shape, generator=gen, dtype=torch.float64) < self.input_fraction
        return _gamma(mean, gen) * projected

    def _delay_steps(self, delays: float | Mapping[str, float] | None) -> torch.Tensor | None:
        """Per-synapse extra steps for LIF's delay queue (one step is the plain recurrence)."""
        if delays is None:
            return None
        seconds = _pair_values("delays", delays, _checks.positive)
        for pair, d in seconds.items():
            if d < self.dt * (1 - 1e-9):
                raise ValueError(f"delays[{pair!r}] = {d * 1e3:g} ms is shorter than dt = {self.dt * 1e3:g} ms, "
                                 "which cannot resolve it; lower dt or lengthen the delay")
        steps = {k: math.floor(d / self.dt + 0.5) - 1 for k, d in seconds.items()}
        return self._pair_table(steps).long()

    # -- structure ---------------------------------------------------------------
    @property
    def w_rec(self) -> torch.Tensor:
        """Recurrent weights ``[post, pre]`` (what the dynamics use)."""
        return self.core.recurrent_weight()

    @property
    def w_in(self) -> torch.Tensor:
        return self.core.w_in

    def populations(self) -> dict[str, slice]:
        """The excitatory and inhibitory neurons, for :func:`creditlab.viz.raster`."""
        pops = {"E": slice(0, self.n_exc)}
        if self.n_inh:
            pops["I"] = slice(self.n_exc, self.n_units)
        return pops

    # -- engine protocol ---------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None, traces: bool = False) -> LIFState:
        return self.core.init_state(batch_size, device, dtype, traces=False)

    def input_current(self, x: torch.Tensor) -> torch.Tensor:
        drive = self.core.input_current(x)
        if self.background:
            drive = drive + self.background * self.core.v_th * (1 - self.core.alpha)
        return drive

    def readout(self, r: torch.Tensor) -> torch.Tensor:
        """``W_out [1; r]`` for filtered spikes ``r [..., N]``."""
        return r @ self.w_out[:, 1:].t() + self.w_out[:, 0]

    def step(self, x_t: torch.Tensor, state: LIFState, i_in: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, LIFState, LiquidLocals]:
        if i_in is None:
            i_in = self.input_current(x_t)
        r, state, lif = self.core.step(x_t, state, i_in, noise)
        return self.readout(r), state, LiquidLocals(x_t, lif.pre_rec, lif.v, lif.z, r)

    # -- reservoir computing -----------------------------------------------------
    @torch.no_grad()
    def run_liquid(self, x: torch.Tensor, state: LIFState | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, LIFState]:
        """Spikes ``z`` and filtered spikes ``r`` (both ``[T, B, N]``) driven by ``x [T, B, n_in]``."""
        self.check_input(x)
        if x.device != self.device or x.dtype != self.dtype:
            raise TypeError(f"x must have the liquid's dtype and device ({self.dtype}, {self.device}), "
                            f"got ({x.dtype}, {x.device}); convert x with x.to(...) or the liquid with .to(...)")
        state = state or self.init_state(x.shape[1], x.device, x.dtype)
        spikes = x.new_empty(x.shape[0], x.shape[1], self.n_units)
        filtered = torch.empty_like(spikes)
        for t, (x_t, i_t) in enumerate(zip(x.unbind(0), self.input_current(x).unbind(0))):
            r, state, lif = self.core.step(x_t, state, i_t)
            spikes[t], filtered[t] = lif.z, r
        return spikes, filtered, state

    def states(self, x: torch.Tensor, state: LIFState | None = None) -> tuple[torch.Tensor, LIFState]:
        """Filtered spikes ``r [T, B, N]`` (the readout's input) driven by ``x``."""
        _, filtered, state = self.run_liquid(x, state)
        return filtered, state

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor, washout: int = 0, ridge: float = 1e-2,
            window: int | None = None) -> "LiquidState":
        """Ridge readout from inputs ``x [T, B, n_in]`` to targets ``[T, B, n_out]`` or labels ``[B]``."""
        r, _ = self.states(x)
        return self.fit_states(r, y, washout=washout, ridge=ridge, window=window)

    @torch.no_grad()
    def fit_states(self, r: torch.Tensor, y: torch.Tensor, washout: int = 0, ridge: float = 1e-2,
                   window: int | None = None) -> "LiquidState":
        """Ridge readout from collected states ``r = states(x)[0]``.

        ``y`` is a float target ``[T, B, n_out]`` (steps from ``washout`` on are
        fit) or integer labels ``[B]`` in 0..n_out−1 (one-hot targets over the
        last ``window`` steps, 1 by default: the readout at the end).
        """
        _checks.tensor("r", r, rank=3, shape=(None, None, self.n_units))
        _checks.non_negative("ridge", ridge)
        design, target = self._training_rows(r, y, washout, window)
        design = torch.cat([torch.ones(design.shape[0], 1, dtype=torch.float64, device=r.device), design], 1)
        gram = design.t() @ design
        gram.diagonal().add_(ridge)
        w_out = torch.linalg.solve(gram, design.t() @ target).t()
        self.w_out.copy_(w_out.to(self.w_out.dtype))
        return self

    def _training_rows(self, r: torch.Tensor, y: torch.Tensor, washout: int,
                       window: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The (state, target) rows of the regression, in float64."""
        n_steps, batch = r.shape[0], r.shape[1]
        if isinstance(y, torch.Tensor) and not y.is_floating_point():
            _checks.tensor("y", y, rank=1, shape=(batch,))
            if bool((y < 0).any()) or bool((y >= self.n_out).any()):
                raise ValueError(f"y labels must lie in 0..{self.n_out - 1} (n_out={self.n_out}), "
                                 f"got values in [{int(y.min())}, {int(y.max())}]")
            window = self._window(window, n_steps)
            onehot = torch.nn.functional.one_hot(y, self.n_out).double()
            rows = r[n_steps - window:].double().reshape(-1, self.n_units)
            return rows, onehot.repeat(window, 1)
        if window is not None:
            raise ValueError("window applies to integer class labels y [B]; a float target y [T, B, n_out] "
                             "is fit from washout on")
        _checks.tensor("y", y, rank=3, shape=(n_steps, batch, self.n_out))
        if isinstance(washout, bool) or not isinstance(washout, int) or not 0 <= washout < n_steps:
            raise ValueError(f"washout must be an int in [0, {n_steps - 1}] (steps), got {washout!r}")
        return (r[washout:].double().reshape(-1, self.n_units),
                y[washout:].double().reshape(-1, self.n_out))

    @staticmethod
    def _window(window: int | None, n_steps: int) -> int:
        window = 1 if window is None else _checks.positive_int("window", window)
        if window > n_steps:
            raise ValueError(f"window must be at most the {n_steps} steps of the trial, got {window}")
        return window

    @torch.no_grad()
    def run(self, x: torch.Tensor, state: LIFState | None = None) -> tuple[torch.Tensor, LIFState]:
        """Readout ``[T, B, n_out]`` for inputs ``x``."""
        r, state = self.states(x, state)
        return self.readout(r), state

    @torch.no_grad()
    def classify(self, x: torch.Tensor, window: int | None = None) -> torch.Tensor:
        """Labels ``[B]``: argmax of the readout averaged over the last ``window`` steps (default 1)."""
        outputs, _ = self.run(x)
        window = self._window(window, outputs.shape[0])
        return outputs[outputs.shape[0] - window:].mean(0).argmax(-1)
