"""Spike-timing-dependent plasticity: pair, triplet and reward-modulated.

These are *direct* plasticity rules (``direct = True``): ``step`` changes the
model's weights in place, under ``no_grad``, as the spikes happen, and no
rule here writes ``p.grad``, so a training loop must not expect a gradient
(an optimizer step after an STDP run changes nothing).  ``RewardSTDP``
changes the weights when a reward arrives (``rule.reward(r)``).

Notation, one step n of length dt: s_j^n ∈ {0, 1} is the presynaptic spike
*arriving* at synapse (i, j) in step n, z_i^n the postsynaptic spike.  For
the input weights W^in, s_j^n = x_j^n (the input spike, no delay); for the
recurrent weights W^rec with per-synapse delay d_ij, s_j^n = z_j^{n−1−d_ij},
the spike in the step it reaches the membrane.  A presynaptic spike thus
acts at the synapse when it arrives (Brian2's convention: ``on_pre`` runs
at arrival), a postsynaptic spike acts at once (no dendritic delay), and a
presynaptic trace seen by a delayed synapse is the presynaptic neuron's
trace delayed by d_ij.  Within a step, depression from arrivals comes
first, then potentiation from postsynaptic spikes: an arrival in the step
of a postsynaptic spike counts as pre-before-post (Δt = 0).

Pair STDP (Song, Miller & Abbott 2000, Nat. Neurosci. 3:919) in its trace
form (Morrison, Diesmann & Gerstner 2008, Biol. Cybern. 98:459)::

    x_j^n = e^{−dt/τ+} x_j^{n−1} + s_j^n                 pairing="all-to-all"
    x_j^n = 1 if s_j^n else e^{−dt/τ+} x_j^{n−1}         pairing="nearest"
    y_i^n = the same with τ− and z_i^n
    on an arrival s_j^n:     W_ij ← clip(W_ij − A− f−(W_ij) ỹ_i^n)     ỹ^n = e^{−dt/τ−} y^{n−1}
    on a spike z_i^n:        W_ij ← clip(W_ij + A+ f+(W_ij) x_j^n)

with clip to [w_min, w_max] (hard bounds) and weight dependence
``"additive"`` (f± = 1) or ``"multiplicative"`` (f+ = w_max − W,
f− = W − w_min; van Rossum, Bi & Turrigiano 2000).  An isolated pair with
Δt = t_post − t_pre changes W by A+ e^{−Δt/τ+} (Δt ≥ 0) or −A− e^{Δt/τ−}
(Δt < 0): the exponential window.

Triplet STDP, minimal all-to-all model (Pfister & Gerstner 2006,
J. Neurosci. 26:9673)::

    r1, r2: presynaptic traces (τ+, τx) of s;  o1, o2: postsynaptic traces (τ−, τy) of z,
    each  r^n = e^{−dt/τ} r^{n−1} + s^n  (all-to-all)
    on an arrival s_j^n:  W_ij ← clip(W_ij − õ1_i (A2− + A3− r̃2_j))   r̃2 = r2 before this arrival
    on a spike z_i^n:     W_ij ← clip(W_ij + r1_j (A2+ + A3+ õ2_i))    õ2 = o2 before this spike

Defaults are the paper's visual-cortex minimal all-to-all fit (Table 4):
τ+ = 16.8 ms, τ− = 33.7 ms, τy = 125 ms, A2+ = 5·10⁻¹⁰, A3+ = 6.2·10⁻³,
A2− = 7·10⁻³, A3− = 0 (τx = 101 ms matters only when A3− > 0).  With
A3± = 0 the triplet rule is the pair rule.

Reward-modulated STDP (Izhikevich 2007, Cereb. Cortex 17:2443; Frémaux &
Gerstner 2016, Front. Neural Circuits 9:85): pair STDP (additive,
all-to-all) feeds a per-trial synaptic eligibility instead of the weight::

    c_ij^n = e^{−dt/τc} c_ij^{n−1} + A+ z_i^n x_j^n − A− s_j^n ỹ_i^n
    on a reward R_b per trial b:  W ← clip(W + η (1/B) Σ_b (R_b − R̄) c^b)
                                  R̄ ← β R̄ + (1 − β) (1/B) Σ_b R_b       (β = baseline_decay)

R̄ starts at the mean reward of the first batch.  The reward comes from the
task: ``rule.reward(r)`` after a run, or ``reward_fn(outputs, target)``
evaluated by ``end``.

Batches: trials of a batch share the weights, so STDP applies the batch mean
of the trials' changes each step (B = 1 is the classical rule).  Traces
reset at every run unless ``carry_traces=True`` (a long simulation split
into ``sim.run(x, state=result.state)`` chunks).  Autapses (the masked
diagonal of W^rec) are never changed, nor are the input synapses of
channels left out of ``plastic_inputs`` (fixed inhibitory inputs, say, as in
Song et al.).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import torch

from .. import _checks
from ..models.base import Model
from ..models.lif import LIF
from .base import Rule

#: which weight matrices a rule may train: input (x presynaptic), recurrent (z presynaptic)
PROJECTIONS = ("in", "rec")
WEIGHT_DEPENDENCES = ("additive", "multiplicative")
PAIRINGS = ("all-to-all", "nearest")

Terms = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Projection:
    """One plastic weight matrix W [post, pre] and the presynaptic history it needs.

    ``ring_dep``/``ring_pot`` hold the presynaptic factors of depression and
    potentiation of the last D+1 steps (newest first), so a synapse with
    delay d reads the entry d steps old.
    """

    key: str
    weight: torch.nn.Parameter
    mask: torch.Tensor | None           # bool [post, pre]: existing synapses (None = all)
    delay_masks: torch.Tensor | None    # [D+1, post, pre] one-hot delays (None = no delays)
    traces: dict[str, torch.Tensor] = field(default_factory=dict)
    ring_dep: tuple[torch.Tensor, ...] = ()
    ring_pot: tuple[torch.Tensor, ...] = ()

    @property
    def depth(self) -> int:
        return 1 if self.delay_masks is None else self.delay_masks.shape[0]

    def push(self, pre_dep: torch.Tensor, pre_pot: torch.Tensor) -> None:
        self.ring_dep = (pre_dep,) + self.ring_dep[:self.depth - 1]
        self.ring_pot = (pre_pot,) + self.ring_pot[:self.depth - 1]

    def outer(self, post: torch.Tensor, ring: tuple[torch.Tensor, ...], per_trial: bool) -> torch.Tensor:
        """Σ over synapses' delays of post_i · pre_j(d_ij): batch mean [post, pre] or per trial [B, post, pre]."""
        if self.delay_masks is None:
            if per_trial:
                return post.unsqueeze(2) * ring[0].unsqueeze(1)
            return post.t() @ ring[0] / post.shape[0]
        pre = torch.stack(ring)                                    # [D+1, B, pre]
        masks = self.delay_masks.to(post.dtype)
        if per_trial:
            return torch.einsum("bi,dbj,dij->bij", post, pre, masks)
        return torch.einsum("bi,dbj,dij->ij", post, pre, masks) / post.shape[0]


def check_bounds(w_min: float, w_max: float) -> tuple[float, float]:
    """Finite hard bounds with ``w_min < w_max``."""
    if isinstance(w_min, bool) or not isinstance(w_min, (int, float)) or not math.isfinite(w_min):
        raise ValueError(f"w_min must be a finite number, got {w_min!r}")
    if isinstance(w_max, bool) or not isinstance(w_max, (int, float)) or not math.isfinite(w_max):
        raise ValueError(f"w_max must be a finite number, got {w_max!r}")
    if not w_min < w_max:
        raise ValueError(f"w_min must be < w_max, got w_min={w_min}, w_max={w_max}")
    return float(w_min), float(w_max)


def check_weights(weights: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``None`` (every plastic matrix the model has) or a non-empty subset of ``("in", "rec")``."""
    if weights is None:
        return None
    names = (weights,) if isinstance(weights, str) else tuple(weights)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"weights must be a non-empty selection of {PROJECTIONS} without repeats, got {weights!r}")
    for name in names:
        _checks.choice("weights", name, PROJECTIONS)
    return names


def decay(dt: float, tau: float) -> float:
    return math.exp(-dt / tau)


class SpikeTimingRule(Rule):
    """Shared machinery: traces, delayed presynaptic factors, and the per-step order.

    A subclass names its traces and says, per step, what the pre- and
    postsynaptic factors of depression and potentiation are (``pre_terms``,
    ``post_terms``) and what to do with the two [post, pre] terms (``apply``).
    """

    model_kinds = ("spiking",)
    direct = True
    #: names of the presynaptic / postsynaptic traces (subclasses set them)
    pre_names: tuple[str, ...] = ()
    post_names: tuple[str, ...] = ()
    #: True when the rule keeps per-trial terms (eligibility) instead of batch means
    per_trial = False

    def __init__(self, w_min: float, w_max: float, weights: str | Sequence[str] | None,
                 carry_traces: bool, plastic_inputs: Sequence[int] | None) -> None:
        super().__init__()
        self.w_min, self.w_max = check_bounds(w_min, w_max)
        self.weights = check_weights(weights)
        self.carry_traces = bool(carry_traces)
        self.plastic_inputs = None if plastic_inputs is None else list(plastic_inputs)
        self.projections: list[Projection] = []
        self.post_traces: dict[str, torch.Tensor] = {}

    # -- attach / begin -----------------------------------------------------------
    def attach(self, model: Model) -> None:
        super().attach(model)
        if not isinstance(model, LIF):
            raise TypeError(f"{type(self).__name__} trains cl.models.LIF networks (it reads input, "
                            f"recurrent and output spikes), got {type(model).__name__}")
        if model.surrogate.name == "smooth":
            raise ValueError(f"{type(self).__name__} needs binary spikes; the model's surrogate='smooth' "
                             "emits graded ones: use 'triangle', 'fast_sigmoid' or 'arctan'")
        names = self.weights or (("in", "rec") if model.recurrent else ("in",))
        if "rec" in names and not model.recurrent:
            raise ValueError("weights includes 'rec' but the model has no recurrent weights (recurrent=False); "
                             "use weights='in'")
        self.projections = [self._projection(model, name, self._input_mask(model)) for name in names]
        self.post_traces = {}

    def _input_mask(self, model: LIF) -> torch.Tensor | None:
        """Plastic input synapses [n_rec, n_in] (None: all of them)."""
        if self.plastic_inputs is None:
            return None
        channels = self.plastic_inputs
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < model.n_in
                               for c in channels):
            raise ValueError(f"plastic_inputs must be a non-empty list of input channels in [0, {model.n_in}), "
                             f"got {channels!r}")
        mask = torch.zeros(model.n_rec, model.n_in, dtype=torch.bool, device=model.w_in.device)
        mask[:, channels] = True
        return mask

    @staticmethod
    def _projection(model: LIF, key: str, input_mask: torch.Tensor | None) -> Projection:
        if key == "in":
            return Projection("in", model.w_in, input_mask, None)
        return Projection("rec", model.w_rec, model.rec_mask.bool(), model.delay_masks)

    def begin(self, model: Model, x: torch.Tensor, target: Any, loss: Any) -> None:
        super().begin(model, x, target, loss)
        if any(p.key == "in" for p in self.projections) and bool(((x != 0) & (x != 1)).any()):
            raise ValueError(f"x must hold input spikes (0 or 1) for {type(self).__name__} on the input weights")
        for proj in self.projections:
            self._check_inside_bounds(proj)
        batch = x.shape[1]
        fresh = not self.carry_traces or not self.post_traces or \
            next(iter(self.post_traces.values())).shape[0] != batch
        if fresh:
            self._reset(batch, x.device, x.dtype)

    def _check_inside_bounds(self, proj: Projection) -> None:
        w = proj.weight.detach()
        w = w if proj.mask is None else w[proj.mask]
        # compare in the weights' precision: a float32 weight clamped to w_max equals float32(w_max)
        low, high = (torch.tensor(bound, dtype=w.dtype) for bound in (self.w_min, self.w_max))
        if w.numel() and (bool((w < low).any()) or bool((w > high).any())):
            raise ValueError(
                f"model.w_{proj.key} has weights in [{float(w.min()):.4g}, {float(w.max()):.4g}] outside the "
                f"rule's bounds [w_min, w_max] = [{self.w_min}, {self.w_max}]: widen w_min/w_max or "
                "initialise the weights inside them")

    def _reset(self, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        n_post = self.model.n_rec
        self.post_traces = {name: torch.zeros(batch, n_post, device=device, dtype=dtype) for name in self.post_names}
        for proj in self.projections:
            zeros = torch.zeros(batch, proj.weight.shape[1], device=device, dtype=dtype)
            proj.traces = {name: zeros for name in self.pre_names}
            proj.ring_dep = proj.ring_pot = tuple(zeros for _ in range(proj.depth))
        self.reset_eligibility(batch, device, dtype)

    def reset_eligibility(self, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        """Start a run's per-trial state (only reward-modulated rules keep one)."""

    # -- per step -----------------------------------------------------------------
    def step(self, t: int, local: NamedTuple, y_t: torch.Tensor, error_t: torch.Tensor | None) -> None:
        with torch.no_grad():
            post_dep, post_pot = self.post_terms(local.z.detach())
            for proj in self.projections:
                arrivals = local.x if proj.key == "in" else local.pre_rec
                proj.push(*self.pre_terms(proj.traces, arrivals.detach()))
                depression = proj.outer(post_dep, proj.ring_dep, self.per_trial)
                potentiation = proj.outer(post_pot, proj.ring_pot, self.per_trial)
                self.apply(proj, depression, potentiation)

    def pre_terms(self, traces: dict[str, torch.Tensor], s: torch.Tensor) -> Terms:
        """Update presynaptic traces with arrivals ``s``; return (depression, potentiation) factors."""
        raise NotImplementedError

    def post_terms(self, z: torch.Tensor) -> Terms:
        """Update postsynaptic traces with spikes ``z``; return (depression, potentiation) factors."""
        raise NotImplementedError

    def apply(self, proj: Projection, depression: torch.Tensor, potentiation: torch.Tensor) -> None:
        """Change W by −depression then +potentiation (each clipped), the order of the docstring."""
        raise NotImplementedError

    def _set_weight(self, proj: Projection, value: torch.Tensor) -> None:
        value = value.clamp(self.w_min, self.w_max)
        if proj.mask is not None:
            value = torch.where(proj.mask, value, proj.weight)
        proj.weight.copy_(value)

    def traces(self) -> dict[str, torch.Tensor]:
        named = dict(self.post_traces)
        for proj in self.projections:
            named.update({f"{name}_{proj.key}": value for name, value in proj.traces.items()})
        return named


def _trace_names(pre: tuple[str, ...], post: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{n}_{k}" for n in pre for k in PROJECTIONS) + post


class STDP(SpikeTimingRule):
    """Pair STDP with additive or multiplicative weight dependence (see module docstring)."""

    name = "stdp"
    pre_names = ("x",)
    post_names = ("y",)
    trace_names = _trace_names(pre_names, post_names)

    def __init__(self, A_plus: float = 0.005, A_minus: float = 0.00525, tau_plus: float = 20e-3,
                 tau_minus: float = 20e-3, w_min: float = 0.0, w_max: float = 1.0,
                 weight_dependence: str = "additive", pairing: str = "all-to-all",
                 weights: str | Sequence[str] | None = None, carry_traces: bool = False,
                 plastic_inputs: Sequence[int] | None = None) -> None:
        super().__init__(w_min, w_max, weights, carry_traces, plastic_inputs)
        self.A_plus = _checks.non_negative("A_plus", A_plus)
        self.A_minus = _checks.non_negative("A_minus", A_minus)
        self.tau_plus = _checks.positive("tau_plus", tau_plus)
        self.tau_minus = _checks.positive("tau_minus", tau_minus)
        self.weight_dependence = _checks.choice("weight_dependence", weight_dependence, WEIGHT_DEPENDENCES)
        self.pairing = _checks.choice("pairing", pairing, PAIRINGS)

    def _accumulate(self, trace: torch.Tensor, spikes: torch.Tensor, tau: float) -> torch.Tensor:
        decayed = decay(self.model.dt, tau) * trace
        if self.pairing == "nearest":
            return torch.where(spikes > 0, torch.ones_like(trace), decayed)
        return decayed + spikes

    def pre_terms(self, traces: dict[str, torch.Tensor], s: torch.Tensor) -> Terms:
        traces["x"] = self._accumulate(traces["x"], s, self.tau_plus)
        return s, traces["x"]

    def post_terms(self, z: torch.Tensor) -> Terms:
        y_before = decay(self.model.dt, self.tau_minus) * self.post_traces["y"]
        self.post_traces["y"] = self._accumulate(self.post_traces["y"], z, self.tau_minus)
        return self.A_minus * y_before, self.A_plus * z

    def apply(self, proj: Projection, depression: torch.Tensor, potentiation: torch.Tensor) -> None:
        w = proj.weight
        multiplicative = self.weight_dependence == "multiplicative"
        self._set_weight(proj, w - (w - self.w_min) * depression if multiplicative else w - depression)
        self._set_weight(proj, w + (self.w_max - w) * potentiation if multiplicative else w + potentiation)


class TripletSTDP(SpikeTimingRule):
    """Minimal all-to-all triplet STDP (Pfister & Gerstner 2006), additive with hard bounds."""

    name = "triplet-stdp"
    pre_names = ("r1", "r2")
    post_names = ("o1", "o2")
    trace_names = _trace_names(pre_names, post_names)

    def __init__(self, A2_plus: float = 5e-10, A3_plus: float = 6.2e-3, A2_minus: float = 7e-3,
                 A3_minus: float = 0.0, tau_plus: float = 16.8e-3, tau_minus: float = 33.7e-3,
                 tau_x: float = 101e-3, tau_y: float = 125e-3, w_min: float = 0.0, w_max: float = 1.0,
                 weights: str | Sequence[str] | None = None, carry_traces: bool = False,
                 plastic_inputs: Sequence[int] | None = None) -> None:
        super().__init__(w_min, w_max, weights, carry_traces, plastic_inputs)
        self.A2_plus = _checks.non_negative("A2_plus", A2_plus)
        self.A3_plus = _checks.non_negative("A3_plus", A3_plus)
        self.A2_minus = _checks.non_negative("A2_minus", A2_minus)
        self.A3_minus = _checks.non_negative("A3_minus", A3_minus)
        self.tau_plus = _checks.positive("tau_plus", tau_plus)
        self.tau_minus = _checks.positive("tau_minus", tau_minus)
        self.tau_x = _checks.positive("tau_x", tau_x)
        self.tau_y = _checks.positive("tau_y", tau_y)

    def pre_terms(self, traces: dict[str, torch.Tensor], s: torch.Tensor) -> Terms:
        dt = self.model.dt
        r2_before = decay(dt, self.tau_x) * traces["r2"]
        traces["r1"] = decay(dt, self.tau_plus) * traces["r1"] + s
        traces["r2"] = r2_before + s
        return s * (self.A2_minus + self.A3_minus * r2_before), traces["r1"]

    def post_terms(self, z: torch.Tensor) -> Terms:
        dt = self.model.dt
        o1_before = decay(dt, self.tau_minus) * self.post_traces["o1"]
        o2_before = decay(dt, self.tau_y) * self.post_traces["o2"]
        self.post_traces["o1"] = o1_before + z
        self.post_traces["o2"] = o2_before + z
        return o1_before, z * (self.A2_plus + self.A3_plus * o2_before)

    def apply(self, proj: Projection, depression: torch.Tensor, potentiation: torch.Tensor) -> None:
        self._set_weight(proj, proj.weight - depression)
        self._set_weight(proj, proj.weight + potentiation)


RewardFn = Callable[[torch.Tensor, Any], Any]


class RewardSTDP(STDP):
    """Reward-modulated pair STDP: STDP feeds an eligibility, a reward turns it into a weight change."""

    name = "reward-stdp"
    per_trial = True
    trace_names = STDP.trace_names + tuple(f"eligibility_{k}" for k in PROJECTIONS)

    def __init__(self, lr: float = 1e-2, A_plus: float = 1.0, A_minus: float = 1.0, tau_plus: float = 20e-3,
                 tau_minus: float = 20e-3, tau_c: float = 1.0, baseline_decay: float = 0.9,
                 w_min: float = 0.0, w_max: float = 1.0, reward_fn: RewardFn | None = None,
                 weights: str | Sequence[str] | None = None, plastic_inputs: Sequence[int] | None = None) -> None:
        super().__init__(A_plus, A_minus, tau_plus, tau_minus, w_min, w_max, weights=weights,
                         plastic_inputs=plastic_inputs)
        self.lr = _checks.positive("lr", lr)
        self.tau_c = _checks.positive("tau_c", tau_c)
        self.baseline_decay = _checks.in_range("baseline_decay", baseline_decay, 0.0, 1.0)
        if reward_fn is not None and not callable(reward_fn):
            raise TypeError(f"reward_fn must be callable as reward_fn(outputs, target) -> reward per trial [B], "
                            f"got {type(reward_fn).__name__}")
        self.reward_fn = reward_fn
        self.baseline: float | None = None
        self.eligibility: dict[str, torch.Tensor] = {}

    def reset_eligibility(self, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        self.eligibility = {proj.key: torch.zeros(batch, *proj.weight.shape, device=device, dtype=dtype)
                            for proj in self.projections}

    def apply(self, proj: Projection, depression: torch.Tensor, potentiation: torch.Tensor) -> None:
        stdp = potentiation - depression
        if proj.mask is not None:
            stdp = stdp * proj.mask
        self.eligibility[proj.key] = decay(self.model.dt, self.tau_c) * self.eligibility[proj.key] + stdp

    def end(self, outputs: torch.Tensor, target: Any, loss: torch.Tensor | None) -> None:
        if self.reward_fn is not None:
            self.reward(self.reward_fn(outputs.detach(), target))

    def reward(self, r: float | torch.Tensor) -> None:
        """Deliver the reward of each trial of the last run (a number or a [B] tensor) and update W."""
        if not self.eligibility:
            raise RuntimeError("reward() needs the eligibility of a run: call sim.run(...) first")
        batch = next(iter(self.eligibility.values())).shape[0]
        rewards = self._as_rewards(r, batch)
        mean = float(rewards.mean())
        baseline = mean if self.baseline is None else self.baseline
        advantage = rewards - baseline                                      # [B]
        with torch.no_grad():
            for proj in self.projections:
                change = torch.einsum("b,bij->ij", advantage, self.eligibility[proj.key]) / batch
                self._set_weight(proj, proj.weight + self.lr * change)
        self.baseline = self.baseline_decay * baseline + (1.0 - self.baseline_decay) * mean

    def _as_rewards(self, r: float | torch.Tensor, batch: int) -> torch.Tensor:
        like = next(iter(self.eligibility.values()))
        if isinstance(r, bool) or not isinstance(r, (int, float, torch.Tensor)):
            raise TypeError(f"reward must be a number or a tensor of one reward per trial [{batch}], "
                            f"got {type(r).__name__}")
        rewards = torch.as_tensor(r, dtype=like.dtype, device=like.device).detach().reshape(-1)
        if rewards.numel() == 1:
            rewards = rewards.expand(batch)
        if rewards.numel() != batch:
            raise ValueError(f"reward must be a number or one reward per trial ({batch}), got {rewards.numel()} values")
        if not bool(torch.isfinite(rewards).all()):
            raise ValueError("reward contains NaN or Inf values")
        return rewards

    def traces(self) -> dict[str, torch.Tensor]:
        named = super().traces()
        named.update({f"eligibility_{key}": value for key, value in self.eligibility.items()})
        return named
