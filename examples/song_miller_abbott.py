"""Competitive Hebbian learning through STDP (Song, Miller & Abbott 2000, Nat. Neurosci. 3:919).

One integrate-and-fire neuron receives 1000 excitatory Poisson inputs through
plastic conductances.  Additive STDP with slightly stronger depression than
potentiation (A−/A+ = 1.05, τ+ = τ− = 20 ms) and hard bounds [0, w_max] makes
the synapses compete: inputs whose spikes tend to precede the postsynaptic
spikes are potentiated, the rest depressed, and the initially uniform weights
split into two groups at the bounds (a bimodal distribution), while the
output rate falls and settles.

Methods.  ``ConductanceNeuron`` (below; equations in its docstring): τ_m =
10 ms, E_l = −74 mV, v_t = −54 mV, v_r = −60 mV, excitatory conductance with
E_e = 0 mV and τ_e = 5 ms, each input spike adding its weight (in units of the
leak conductance) to g, exponential-Euler steps of dt = 0.1 ms.  1000 inputs
fire as independent Poisson processes at 15 Hz; the weights start uniform in
[0, w_max], w_max = 0.01.  ``cl.rules.STDP`` additive, all-to-all, A+ =
0.01·w_max, A− = 1.05·A+, τ± = 20 ms, on all input synapses.  The simulation
runs in one-second chunks with ``carry_traces=True`` and the state carried
over.  These are the parameters of Brian2's reproduction of the paper
(``examples/synapses/STDP.py``), except that Brian2's example uses the fixed
driving force E_e − v_r, while here, as in Song et al., it is E_e − v.  Song
et al. also use τ_m = 20 ms, 200 fixed inhibitory inputs and A+ = 0.005·w_max,
which would need proportionally longer runs.  At dt = 0.1 ms the
discrete-time bias of the window (a presynaptic spike in the step of a
postsynaptic one counts as pre-before-post, a factor e^{dt/τ} = 1.005 in
favour of potentiation) is small beside the 5 % excess of depression.

The neuron with the rule attached equals the same equations written in
Brian2 step for step (identical output spikes, weights equal to 1e-12;
``tests/test_stdp.py``).

    python examples/song_miller_abbott.py --seconds 100 --seed 0 --out song_miller_abbott.png

Measured (seed 0, 100 s simulated in 558–802 s wall in two runs on a heavily
shared 2-core machine, 0.12–0.18 simulated s per wall s): the weights become U-shaped, with
24.0 % within 10 % of 0 and 18.3 % within 10 % of w_max (initially 8.8 % and
11.0 %), and 23.9 % in the middle, 0.3–0.7 w_max (initially 39.7 %): the
density near each bound is 4.0 and 3.1 times the density in the middle.  The
output rate falls from 40–46 Hz in the first seconds to 24.4 Hz over the last
10 s.  The split is still in progress at 100 s (the middle keeps emptying
at about 1 % of the weights per 10 s); Song et al.'s figure shows the
end state of a longer run.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

import creditlab as cl
from creditlab import _checks


class ConductanceState(NamedTuple):
    v: torch.Tensor   # membrane potential (V) [B, N]
    z: torch.Tensor   # spikes of the last step [B, N]
    g: torch.Tensor   # excitatory conductance, in units of the leak conductance [B, N]


class ConductanceLocals(NamedTuple):
    """What a local rule may read after a step: the step's input spikes and the neuron's state."""
    x: torch.Tensor   # input spikes arriving in this step [B, n_in]
    v: torch.Tensor
    g: torch.Tensor
    z: torch.Tensor


class ConductanceNeuron(cl.models.LIF):
    """Integrate-and-fire neurons with an excitatory conductance (Song, Miller & Abbott 2000)::

        τ_m dv/dt = E_l − v + g (E_e − v),     τ_e dg/dt = −g,     g += W_j on an input spike of j
        v > v_t  →  spike, v ← v_r

    One step n of length dt, by exponential Euler (g held at its value at the
    start of the step, the scheme Brian2 calls ``exponential_euler``)::

        ṽ^{n−1} = v_r if z^{n−1} else v^{n−1}
        v^n     = v_∞ + (ṽ^{n−1} − v_∞) e^{−dt (1 + g^{n−1}) / τ_m}
        v_∞     = (E_l + g^{n−1} E_e) / (1 + g^{n−1})
        z^n     = H(v^n − v_t)
        g^n     = e^{−dt/τ_e} g^{n−1} + Σ_j W_j s_j^n

    An input spike s^n raises g at the end of step n and moves v from step
    n + 1 on (Brian2's default schedule: state update, thresholds, synaptic
    events, reset).  Conductances are in units of the leak conductance.

    A subclass of :class:`cl.models.LIF` so that the rules that train LIF input
    weights (``cl.rules.STDP``) attach unchanged: ``w_in`` [n_rec, n_in] holds
    the peak conductances W; the output is the spike train itself, so the
    inherited leaky readout is removed.
    """

    def __init__(self, n_in: int, n_rec: int = 1, dt: float = 1e-4, tau_m: float = 10e-3,
                 tau_e: float = 5e-3, E_l: float = -74e-3, E_e: float = 0.0, v_t: float = -54e-3,
                 v_r: float = -60e-3, seed: int | None = None) -> None:
        super().__init__(n_in, n_rec, n_rec, recurrent=False, dt=dt, tau_m=tau_m, seed=seed)
        del self.w_out, self.b_out
        self.tau_e = _checks.positive("tau_e", tau_e)
        for name, value in (("E_l", E_l), ("E_e", E_e), ("v_t", v_t), ("v_r", v_r)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite voltage in volts, got {value!r}")
        if not (v_r < v_t and E_l < v_t < E_e):
            raise ValueError(f"voltages must satisfy v_r < v_t and E_l < v_t < E_e, got v_r={v_r}, v_t={v_t}, "
                             f"E_l={E_l}, E_e={E_e}")
        self.E_l, self.E_e, self.v_t, self.v_r = float(E_l), float(E_e), float(v_t), float(v_r)
        self.g_decay = math.exp(-dt / tau_e)

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None, traces: bool = False) -> ConductanceState:
        device = device or self.device
        dtype = dtype or self.dtype
        zeros = torch.zeros(batch_size, self.n_rec, device=device, dtype=dtype)
        return ConductanceState(torch.full_like(zeros, self.E_l), zeros, zeros)

    def step(self, x_t: torch.Tensor, state: ConductanceState, i_in: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, ConductanceState, ConductanceLocals]:
        if noise is not None:
            raise ValueError("ConductanceNeuron takes no current noise (its input is a conductance)")
        if i_in is None:
            i_in = self.input_current(x_t)
        v_start = torch.where(state.z > 0, self.v_r, state.v)
        gain = state.g + 1.0
        v_inf = self.E_e + (self.E_l - self.E_e) / gain          # (E_l + g E_e) / (1 + g)
        v = torch.lerp(v_inf, v_start, torch.exp(gain * (-self.dt / self.tau_m)))
        z = (v > self.v_t).to(v.dtype)
        g = torch.add(i_in, state.g, alpha=self.g_decay)
        return z, ConductanceState(v, z, g), ConductanceLocals(x_t, v, g, z)


class Outcome(NamedTuple):
    initial: np.ndarray      # weights / w_max at the start
    final: np.ndarray        # weights / w_max at the end
    rates: list[float]       # output rate (Hz) in each simulated second
    seconds: float           # simulated time
    wall: float              # wall-clock time of the simulation


def near_bounds(w: np.ndarray, margin: float = 0.1) -> tuple[float, float]:
    """Fractions of weights (in units of w_max) within ``margin`` of 0 and of 1."""
    return float((w < margin).mean()), float((w > 1 - margin).mean())


def middle_fraction(w: np.ndarray) -> float:
    """Fraction of weights (in units of w_max) in the middle, 0.3 < w < 0.7."""
    return float(((w > 0.3) & (w < 0.7)).mean())


def simulate(seconds: int = 100, n_inputs: int = 1000, rate: float = 15.0, dt: float = 1e-4,
             w_max: float = 0.01, a_plus_fraction: float = 0.01, depression_ratio: float = 1.05,
             seed: int = 0,
             report: Callable[[int, np.ndarray, float], None] | None = None) -> Outcome:
    """Run Song, Miller & Abbott's setup for ``seconds`` simulated seconds."""
    model = ConductanceNeuron(n_inputs, dt=dt, seed=seed).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.w_in.copy_(w_max * torch.rand(1, n_inputs, generator=gen, dtype=torch.float64))
    initial = model.w_in.detach()[0].numpy() / w_max
    a_plus = a_plus_fraction * w_max
    rule = cl.rules.STDP(A_plus=a_plus, A_minus=depression_ratio * a_plus, tau_plus=20e-3, tau_minus=20e-3,
                         w_min=0.0, w_max=w_max, weight_dependence="additive", carry_traces=True)
    sim = cl.Simulator(model, rule, monitors=("spikes",))
    steps_per_second = round(1.0 / dt)
    state, output_rates = None, []
    start = time.perf_counter()
    for second in range(seconds):
        x = (torch.rand(steps_per_second, 1, n_inputs, generator=gen, dtype=torch.float64) < rate * dt).double()
        result = sim.run(x, state=state)
        state = result.state
        output_rates.append(float(result.record.spikes.float().sum()))
        if report is not None:
            report(second + 1, model.w_in.detach()[0].numpy() / w_max, output_rates[-1])
    wall = time.perf_counter() - start
    return Outcome(initial, model.w_in.detach()[0].numpy() / w_max, output_rates, float(seconds), wall)


def plot(outcome: Outcome, path: Path) -> None:
    """Histogram of the weights before and after learning, written atomically to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, weights, title in ((axes[0], outcome.initial, "initial"),
                               (axes[1], outcome.final, f"after {outcome.seconds:.0f} s of STDP")):
        ax.hist(weights, bins=40, range=(0, 1), color="0.3")
        ax.set_xlabel("w / w_max")
        ax.set_title(title)
    axes[0].set_ylabel("synapses")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=100, help="simulated seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("song_miller_abbott.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    def report(second: int, w: np.ndarray, rate: float) -> None:
        if second % 5 == 0:
            low, high = near_bounds(w)
            print(f"t = {second:4d} s  output {rate:5.1f} Hz  near 0: {low:.3f}  near w_max: {high:.3f}  "
                  f"middle: {middle_fraction(w):.3f}", flush=True)

    outcome = simulate(args.seconds, seed=args.seed, report=report)
    low, high = near_bounds(outcome.final)
    print(f"final: {low:.3f} of the weights within 10 % of 0, {high:.3f} within 10 % of w_max, "
          f"{middle_fraction(outcome.final):.3f} in (0.3, 0.7) w_max "
          f"(initially {near_bounds(outcome.initial)[0]:.3f} / {near_bounds(outcome.initial)[1]:.3f} / "
          f"{middle_fraction(outcome.initial):.3f})")
    print(f"output rate over the last 10 s: {np.mean(outcome.rates[-10:]):.1f} Hz")
    print(f"simulated {outcome.seconds:.0f} s in {outcome.wall:.0f} s wall "
          f"({outcome.seconds / outcome.wall:.2f} simulated s per wall s)")
    plot(outcome, args.out)
    print(f"histogram written to {args.out}")


if __name__ == "__main__":
    main()
