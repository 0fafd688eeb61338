"""Export a creditlab LIF/ALIF network (and its STDP rule) to an identical Brian2 network.

creditlab's discrete dynamics (``creditlab/models/lif.py``), step t → t+1::

    v^{t+1} = α v^t + Σ_i W^rec_ji z_i^{t-d_ji} + Σ_i W^in_ji x_i^{t+1} − v_th z^t
    a^{t+1} = ρ a^t + z^t
    z^{t+1} = H(v^{t+1} − v_th − β_j a^{t+1})      (0 while refractory)

The reset (−v_th z^t) and the adaptation jump (+z^t) enter *after* the next
decay, and recurrent spikes reach their target one step (plus d_ji) later.
Brian2's default schedule (groups → thresholds → synapses → resets) would
decay the reset and apply synaptic input after the threshold, so the
exported network runs on the schedule

    groups → resets → synapses → thresholds

Within one Brian2 step the state updater first decays v and a exactly
(``method="exact"``); the resetter applies ``v -= v_th; a += 1`` to the
neurons that spiked in the previous step (the spike space still holds
them, since thresholds have not run yet); the synaptic pathways push those
spikes into their queues and deliver whatever is due (``v_post += w``);
only then is ``v > v_th + β_j a`` tested.  That is the creditlab update
term by term.

Times and constants, at ``dt = model.dt``:

- Brian2 step n+1 computes creditlab step n (Brian2 step 0 is an empty
  first step), so input x^n is emitted by the SpikeGeneratorGroup at n·dt,
  delivered by the input synapses in step n+1, and the run lasts (T+1)·dt
  (``handles.duration``).
- A recurrent delay of d steps is Brian2 ``delay = d·dt``: a spike
  thresholded in step s is pushed in step s+1 and delivered d steps later.
- creditlab's ``t_ref`` counts as Brian2 does: a neuron that spikes at
  step s may spike again at step s + n_ref (n_ref = round(t_ref/dt)), so
  ``refractory = n_ref·dt``.  v integrates while refractory.
- No autapses.

With a finer Brian2 clock (``dt = model.dt / k``) the same constants are
kept in seconds — one-step latency model.dt, so delay (d+1)·model.dt − dt,
and refractory n_ref·model.dt — which simulates the network at a finer
resolution; only ``dt = model.dt`` reproduces creditlab step for step.

STDP (``rule=cl.rules.STDP(...)`` or ``TripletSTDP``) becomes event-driven
traces on the plastic synapses, as in ``creditlab/rules/stdp.py``:
``on_pre`` (at arrival, after ``v_post += w``) applies depression and bumps
the presynaptic traces; ``on_post`` applies potentiation and bumps the
postsynaptic traces.  The postsynaptic pathway runs right after the
thresholds of the same step (``when="after_thresholds"``), so a postsynaptic
spike is processed after the arrivals of its step, as creditlab orders them.

The leaky readout (W_out) is not exported: Brian2 simulates the spiking
network; ``handles`` give its spikes, membrane and final weights in
creditlab's layout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import _checks
from ..models.base import Model
from ..models.lif import LIF
from ..rules.base import Rule
from ..rules.stdp import STDP, RewardSTDP, TripletSTDP

#: the schedule that makes Brian2's step creditlab's step (see module docstring)
SCHEDULE = ["start", "groups", "resets", "synapses", "thresholds", "end"]


@dataclass
class Brian2Handles:
    """The Brian2 objects of an exported network and readers in creditlab's layout."""

    neurons: Any
    inputs: Any
    input_synapses: Any
    recurrent_synapses: Any | None
    spike_monitor: Any
    state_monitor: Any
    dt: float              # Brian2 clock step, seconds
    n_steps: int           # creditlab steps of the given input (0 without input)
    duration: Any          # Brian2 Quantity: run the network this long to cover the input

    def spike_trains(self) -> np.ndarray:
        """Spikes [steps, n_rec] (bool), row k = creditlab step k (Brian2 clock steps when dt differs)."""
        steps = self.state_monitor.v.shape[1] - 1
        z = np.zeros((steps, len(self.neurons)), dtype=bool)
        index = np.round(np.asarray(self.spike_monitor.t_) / self.dt).astype(int) - 1
        z[index, np.asarray(self.spike_monitor.i)] = True
        return z

    def membrane(self) -> np.ndarray:
        """Membrane potential [steps, n_rec] at the end of each step (after the empty first step)."""
        return np.asarray(self.state_monitor.v)[:, 1:].T

    def weights(self, which: str) -> np.ndarray:
        """Current weights ``"in"`` [n_rec, n_in] or ``"rec"`` [n_rec, n_rec] (zero diagonal)."""
        _checks.choice("which", which, ("in", "rec"))
        synapses = self.input_synapses if which == "in" else self.recurrent_synapses
        if synapses is None:
            raise ValueError("which='rec' but the exported model has no recurrent weights")
        n_pre = len(synapses.source)
        w = np.zeros((len(self.neurons), n_pre))
        w[np.asarray(synapses.j), np.asarray(synapses.i)] = np.asarray(synapses.w)
        return w


def to_brian2(model: Model, input_spikes: torch.Tensor | np.ndarray | None = None,
              rule: Rule | None = None, dt: float | None = None) -> tuple[Any, Brian2Handles]:
    """Build the Brian2 network equivalent to ``model`` (and ``rule``); return ``(network, handles)``.

    ``input_spikes``: binary ``[T, n_in]`` (or ``[T, 1, n_in]``) spikes to drive the
    network, or None for an empty generator (``handles.inputs.set_spikes`` later).
    ``rule``: None, :class:`~creditlab.rules.STDP` or :class:`~creditlab.rules.TripletSTDP`.
    Run with ``network.run(handles.duration)``.  Brian2 uses its current
    code-generation target (``brian2.prefs.codegen.target``).
    """
    b2 = _import_brian2()
    _check_model(model)
    brian_dt = _check_dt(model, dt)
    spikes = _check_input_spikes(model, input_spikes)
    _check_rule(model, rule)
    sec = b2.second
    plastic = set() if rule is None else {p.key for p in rule.projections}

    neurons = b2.NeuronGroup(
        model.n_rec, "dv/dt = -v / tau_m : 1\nda/dt = -a / tau_a : 1\nbeta_j : 1 (constant)",
        threshold="v > v_th + beta_j * a", reset="v -= v_th\na += 1",
        refractory=model.n_refractory * model.dt * sec, method="exact", dt=brian_dt * sec,
        namespace=dict(tau_m=model.tau_m * sec, tau_a=model.tau_a * sec, v_th=model.v_th))
    neurons.beta_j = _numpy(model.beta_vec)

    steps, channels = np.nonzero(spikes) if spikes is not None else (np.zeros(0, int), np.zeros(0, int))
    inputs = b2.SpikeGeneratorGroup(model.n_in, channels, steps * model.dt * sec, dt=brian_dt * sec)
    input_synapses = _synapses(b2, inputs, neurons, rule if "in" in plastic else None, brian_dt)
    post, pre = np.nonzero(np.ones((model.n_rec, model.n_in)))
    input_synapses.connect(i=pre, j=post)
    input_synapses.w = _numpy(model.w_in)[post, pre]
    if "in" in plastic:
        mask = next(p.mask for p in rule.projections if p.key == "in")
        input_synapses.plastic = 1.0 if mask is None else _numpy(mask)[post, pre]
    objects = [neurons, inputs, input_synapses]

    recurrent = None
    if model.recurrent:
        recurrent = _synapses(b2, neurons, neurons, rule if "rec" in plastic else None, brian_dt)
        post, pre = np.nonzero(1 - np.eye(model.n_rec))
        recurrent.connect(i=pre, j=post)
        recurrent.w = _numpy(model.recurrent_weight())[post, pre]
        if "rec" in plastic:
            recurrent.plastic = 1.0   # the autapses the mask excludes are not connected
        delays = _numpy(model.delays) if model.delays is not None else np.zeros((model.n_rec, model.n_rec))
        recurrent.delay = ((delays[post, pre] + 1) * model.dt - brian_dt) * sec
        objects.append(recurrent)

    spike_monitor = b2.SpikeMonitor(neurons)
    state_monitor = b2.StateMonitor(neurons, "v", record=True, when="end", dt=brian_dt * sec)
    network = b2.Network(*objects, spike_monitor, state_monitor)
    network.schedule = list(SCHEDULE)
    n_steps = 0 if spikes is None else spikes.shape[0]
    duration = (n_steps * model.dt + brian_dt) * sec
    return network, Brian2Handles(neurons, inputs, input_synapses, recurrent, spike_monitor, state_monitor,
                                  brian_dt, n_steps, duration)


def _import_brian2() -> Any:
    try:
        import brian2
    except ImportError as error:  # brian2 is an optional dependency
        raise ImportError("cl.export.to_brian2 needs Brian2: pip install brian2") from error
    return brian2


def _numpy(value: torch.Tensor) -> np.ndarray:
    return value.detach().cpu().double().numpy()


def _check_model(model: Model) -> None:
    if not isinstance(model, LIF):
        raise TypeError(f"model must be a cl.models.LIF (LIF/ALIF network) to export to Brian2, got "
                        f"{type(model).__name__}: Brian2 simulates spiking neurons, not rate units or "
                        "feed-forward layers")
    if model.surrogate.name == "smooth":
        raise ValueError("model has surrogate='smooth' (graded spikes σ(x)), which a Brian2 threshold cannot "
                         "express; export a model with a spiking surrogate ('triangle', 'fast_sigmoid', 'arctan')")


def _check_dt(model: LIF, dt: float | None) -> float:
    if dt is None:
        return model.dt
    dt = _checks.positive("dt", dt)
    ratio = model.dt / dt
    if ratio < 1 - 1e-9 or not math.isclose(ratio, round(ratio), rel_tol=1e-9):
        raise ValueError(f"dt must be model.dt ({model.dt}) or model.dt divided by an integer, got {dt}")
    return model.dt / round(ratio)


def _check_input_spikes(model: LIF, input_spikes: torch.Tensor | np.ndarray | None) -> np.ndarray | None:
    if input_spikes is None:
        return None
    if not isinstance(input_spikes, (torch.Tensor, np.ndarray)):
        raise TypeError(f"input_spikes must be a tensor or array [T, n_in], got {type(input_spikes).__name__}")
    spikes = input_spikes.detach().cpu().numpy() if isinstance(input_spikes, torch.Tensor) else input_spikes
    if spikes.ndim == 3:
        if spikes.shape[1] != 1:
            raise ValueError(f"input_spikes must hold one trial ([T, n_in] or [T, 1, n_in]), got shape {spikes.shape}")
        spikes = spikes[:, 0]
    if spikes.ndim != 2 or spikes.shape[1] != model.n_in:
        raise ValueError(f"input_spikes must have shape [T, n_in={model.n_in}], got {spikes.shape}")
    if not np.isin(spikes, (0, 1)).all():
        raise ValueError("input_spikes must hold spikes (0 or 1): a Brian2 SpikeGeneratorGroup emits events, "
                         "not graded currents")
    return spikes


def _check_rule(model: LIF, rule: Rule | None) -> None:
    if rule is None:
        return
    if isinstance(rule, RewardSTDP) or not isinstance(rule, (STDP, TripletSTDP)):
        raise TypeError(f"rule must be None, cl.rules.STDP or cl.rules.TripletSTDP to export to Brian2, got "
                        f"{type(rule).__name__}")
    if rule.model is not model:
        raise ValueError("rule must be attached to this model (cl.Simulator(model, rule) or rule.attach(model))")


def _synapses(b2: Any, source: Any, target: Any, rule: Rule | None, dt: float) -> Any:
    """Synapses with ``v_post += w`` and, for a plastic projection, the rule's event-driven traces.

    ``plastic`` (0 or 1 per synapse) keeps the fixed synapses of a plastic
    projection (``plastic_inputs``) unchanged: w ← plastic·clip(w + Δ) + (1 − plastic)·w.
    """
    if rule is None:
        return b2.Synapses(source, target, "w : 1", on_pre="v_post += w", dt=dt * b2.second)
    model_eqs, on_pre, on_post, namespace = (_triplet(rule) if isinstance(rule, TripletSTDP) else _pair(rule))
    model_eqs += "\nplastic : 1 (constant)"
    namespace.update(w_min=rule.w_min, w_max=rule.w_max)
    synapses = b2.Synapses(source, target, model_eqs, on_pre="v_post += w\n" + on_pre, on_post=on_post,
                           namespace={k: v * b2.second if k.startswith("tau") else v for k, v in namespace.items()},
                           dt=dt * b2.second)
    # potentiation after the thresholds of the step, i.e. after that step's arrivals
    synapses.post.when = "after_thresholds"
    return synapses


def _bounded(update: str) -> str:
    """The clipped update on plastic synapses, the unchanged weight on fixed ones."""
    return f"plastic * clip({update}, w_min, w_max) + (1 - plastic) * w"


def _pair(rule: STDP) -> tuple[str, str, str, dict[str, float]]:
    bump = "= 1" if rule.pairing == "nearest" else "+= 1"
    f_minus, f_plus = ("(w - w_min)", "(w_max - w)") if rule.weight_dependence == "multiplicative" else ("1", "1")
    model_eqs = ("w : 1\n"
                 "dxtrace/dt = -xtrace / tau_plus : 1 (event-driven)\n"
                 "dytrace/dt = -ytrace / tau_minus : 1 (event-driven)")
    on_pre = f"w = {_bounded(f'w - A_minus * {f_minus} * ytrace')}\nxtrace {bump}"
    on_post = f"w = {_bounded(f'w + A_plus * {f_plus} * xtrace')}\nytrace {bump}"
    return model_eqs, on_pre, on_post, dict(A_plus=rule.A_plus, A_minus=rule.A_minus,
                                            tau_plus=rule.tau_plus, tau_minus=rule.tau_minus)


def _triplet(rule: TripletSTDP) -> tuple[str, str, str, dict[str, float]]:
    model_eqs = ("w : 1\n"
                 "dr1/dt = -r1 / tau_plus : 1 (event-driven)\n"
                 "dr2/dt = -r2 / tau_x : 1 (event-driven)\n"
                 "do1/dt = -o1 / tau_minus : 1 (event-driven)\n"
                 "do2/dt = -o2 / tau_y : 1 (event-driven)")
    on_pre = f"w = {_bounded('w - o1 * (A2_minus + A3_minus * r2)')}\nr1 += 1\nr2 += 1"
    on_post = f"w = {_bounded('w + r1 * (A2_plus + A3_plus * o2)')}\no1 += 1\no2 += 1"
    return model_eqs, on_pre, on_post, dict(
        A2_plus=rule.A2_plus, A3_plus=rule.A3_plus, A2_minus=rule.A2_minus, A3_minus=rule.A3_minus,
        tau_plus=rule.tau_plus, tau_minus=rule.tau_minus, tau_x=rule.tau_x, tau_y=rule.tau_y)
