"""STDP rules against published dynamics and closed-form spike-pair results.

- the pair-STDP window measured from isolated spike pairs is the exponential
  window the rule was given (parameters recovered by a curve fit);
- nearest-spike vs all-to-all pairing, multiplicative weight dependence and
  the triplet rule against hand-computed sums over spike pairs/triplets;
- Song, Miller & Abbott (2000): the example's conductance neuron with pair
  STDP equals the same equations in Brian2 step for step (fast); the
  bimodal weight distribution and the normalised output rate (slow);
- reward-modulated STDP learns to make one neuron fire more than another,
  where a reward unrelated to the outputs does not;
- direct plasticity writes no gradient; traces carried across chunks equal
  one long run; bad arguments are refused naming the argument.
"""
from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import pytest
import torch
from scipy.optimize import curve_fit

import creditlab as cl

DT = 1e-3


def driven_neuron(n_pre: int, w_pre: float, teacher_steps: list[int], n_steps: int,
                  pre_steps: list[list[int]]) -> tuple[cl.models.LIF, torch.Tensor]:
    """One LIF neuron: ``n_pre`` weak plastic inputs spiking at ``pre_steps`` and a teacher input
    (last channel, weight 1.2) that makes the neuron spike exactly at ``teacher_steps``."""
    model = cl.models.LIF(n_pre + 1, 1, 1, recurrent=False, dt=DT, seed=0).double()
    with torch.no_grad():
        model.w_in.fill_(w_pre)
        model.w_in[0, n_pre] = 1.2
    x = torch.zeros(n_steps, 1, n_pre + 1, dtype=torch.float64)
    x[teacher_steps, 0, n_pre] = 1
    for channel, steps in enumerate(pre_steps):
        x[steps, 0, channel] = 1
    return model, x


def weight_change(model: cl.models.LIF, x: torch.Tensor, rule: cl.rules.Rule,
                  post_steps: list[int]) -> np.ndarray:
    """Run once and return the change of every plastic input weight; check the post spikes."""
    before = model.w_in.detach().clone()
    result = cl.Simulator(model, rule, monitors=("spikes",)).run(x)
    fired = np.flatnonzero(result.record.spikes[:, 0, 0].numpy())
    assert fired.tolist() == post_steps, f"teacher should make the neuron spike at {post_steps}, got {fired}"
    return (model.w_in.detach() - before)[0, :-1].numpy()


def test_pair_window_recovers_amplitudes_and_time_constants() -> None:
    a_plus, a_minus, tau_plus, tau_minus = 0.002, 0.0021, 17e-3, 34e-3
    lags = np.arange(-80, 81, 2)                 # Δt = t_post − t_pre in steps
    t_post = 120
    model, x = driven_neuron(len(lags), 0.01, [t_post], 260, [[t_post - lag] for lag in lags])
    rule = cl.rules.STDP(A_plus=a_plus, A_minus=a_minus, tau_plus=tau_plus, tau_minus=tau_minus,
                         w_max=2.0, weights="in")
    dw = weight_change(model, x, rule, [t_post])

    delta_t = lags * DT
    causal, acausal = delta_t >= 0, delta_t < 0
    (fit_a_plus, fit_tau_plus), _ = curve_fit(lambda t, a, tau: a * np.exp(-t / tau),
                                              delta_t[causal], dw[causal], p0=(1e-3, 10e-3))
    (fit_a_minus, fit_tau_minus), _ = curve_fit(lambda t, a, tau: -a * np.exp(t / tau),
                                                delta_t[acausal], dw[acausal], p0=(1e-3, 10e-3))
    for fitted, true in [(fit_a_plus, a_plus), (fit_tau_plus, tau_plus),
                         (fit_a_minus, a_minus), (fit_tau_minus, tau_minus)]:
        assert fitted == pytest.approx(true, rel=0.05)
    assert dw[lags == 0][0] == pytest.approx(a_plus), "a pre spike in the post spike's step is pre-before-post"


def test_nearest_spike_pairing_keeps_only_the_latest_spike() -> None:
    a_plus, tau = 0.003, 20e-3
    # channel 0: pre spikes 30 and 10 steps before the post spike; channel 1: the same, to be paired nearest
    pre = [[70, 90], [70, 90]]
    results = {}
    for pairing in ("all-to-all", "nearest"):
        model, x = driven_neuron(2, 0.01, [100], 140, pre)
        rule = cl.rules.STDP(A_plus=a_plus, A_minus=0.0, tau_plus=tau, w_max=2.0, pairing=pairing, weights="in")
        results[pairing] = weight_change(model, x, rule, [100])[0]
    assert results["all-to-all"] == pytest.approx(a_plus * (math.exp(-30e-3 / tau) + math.exp(-10e-3 / tau)))
    assert results["nearest"] == pytest.approx(a_plus * math.exp(-10e-3 / tau))


def test_multiplicative_weight_dependence_scales_by_distance_to_bounds() -> None:
    a_plus, a_minus, tau, w0, w_max = 0.1, 0.12, 20e-3, 0.2, 2.0
    # channel 0: pre 5 steps before the post spike; channel 1: pre 5 steps after it
    model, x = driven_neuron(2, w0, [50], 80, [[45], [55]])
    rule = cl.rules.STDP(A_plus=a_plus, A_minus=a_minus, tau_plus=tau, tau_minus=tau, w_max=w_max,
                         weight_dependence="multiplicative", weights="in")
    dw = weight_change(model, x, rule, [50])
    assert dw[0] == pytest.approx(a_plus * (w_max - w0) * math.exp(-5e-3 / tau))
    assert dw[1] == pytest.approx(-a_minus * (w0 - 0.0) * math.exp(-5e-3 / tau))


def test_triplet_rule_adds_the_post_post_pre_term() -> None:
    """Pfister & Gerstner's potentiation: one pre spike, then two post spikes."""
    a2p, a3p, tau_plus, tau_y = 2e-3, 6e-3, 16.8e-3, 125e-3
    t_pre, t1, t2 = 40, 50, 70
    model, x = driven_neuron(1, 0.01, [t1, t2], 100, [[t_pre]])
    rule = cl.rules.TripletSTDP(A2_plus=a2p, A3_plus=a3p, A2_minus=5e-3, A3_minus=1e-3, tau_plus=tau_plus,
                                tau_y=tau_y, w_max=2.0, weights="in")
    dw = weight_change(model, x, rule, [t1, t2])[0]
    first = a2p * math.exp(-(t1 - t_pre) * DT / tau_plus)
    second = math.exp(-(t2 - t_pre) * DT / tau_plus) * (a2p + a3p * math.exp(-(t2 - t1) * DT / tau_y))
    assert dw == pytest.approx(first + second)


def test_stdp_is_direct_plasticity_and_writes_no_gradient() -> None:
    rule = cl.rules.STDP(w_max=2.0)
    assert rule.direct and not rule.uses_autograd
    model, x = driven_neuron(1, 0.01, [20], 40, [[15]])
    weight_change(model, x, rule, [20])
    assert all(p.grad is None for p in model.parameters())
    assert cl.rules.RULES["stdp"] is cl.rules.STDP
    assert cl.rules.RULES["triplet-stdp"] is cl.rules.TripletSTDP
    assert cl.rules.RULES["reward-stdp"] is cl.rules.RewardSTDP


def recurrent_network(seed: int) -> tuple[cl.models.LIF, torch.Tensor]:
    model = cl.models.LIF(20, 30, 2, seed=seed, delays=3, adaptive_fraction=0.5, tau_a=60e-3, beta=0.5).double()
    gen = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        model.w_in.copy_(0.2 * torch.rand(model.w_in.shape, generator=gen))
        model.w_rec.copy_(0.03 * torch.rand(model.w_rec.shape, generator=gen))
    x = (torch.rand(200, 1, 20, generator=gen, dtype=torch.float64) < 0.05).double()
    return model, x


def test_carried_traces_make_chunked_runs_equal_one_run() -> None:
    whole, x = recurrent_network(0)
    cl.Simulator(whole, cl.rules.STDP(A_plus=0.002, A_minus=0.0021)).run(x)
    chunked, _ = recurrent_network(0)
    sim = cl.Simulator(chunked, cl.rules.STDP(A_plus=0.002, A_minus=0.0021, carry_traces=True))
    state = sim.run(x[:70]).state
    sim.run(x[70:], state=state)
    assert (whole.w_in != recurrent_network(0)[0].w_in).any(), "STDP changed nothing"
    torch.testing.assert_close(chunked.w_in, whole.w_in, rtol=0, atol=1e-12)
    torch.testing.assert_close(chunked.w_rec, whole.w_rec, rtol=0, atol=1e-12)


# -- Song, Miller & Abbott (2000): examples/song_miller_abbott.py ----------------------
def brian2_conductance_run(b2: ModuleType, w0: np.ndarray, x: torch.Tensor, dt: float, a_plus: float,
                           a_minus: float, w_max: float) -> tuple[np.ndarray, np.ndarray]:
    """The example's neuron and additive STDP written directly in Brian2 (default schedule; ``b2`` with
    numpy code generation); returns the output spike steps and the final weights."""
    clock = dt * b2.second
    namespace = dict(E_l=-74 * b2.mV, E_e=0 * b2.mV, tau_m=10 * b2.ms, tau_e=5 * b2.ms, v_t=-54 * b2.mV,
                     v_r=-60 * b2.mV, tau_plus=20 * b2.ms, tau_minus=20 * b2.ms, A_plus=a_plus,
                     A_minus=a_minus, w_max=w_max)
    neuron = b2.NeuronGroup(1, "dv/dt = (E_l - v + g * (E_e - v)) / tau_m : volt\ndg/dt = -g / tau_e : 1",
                            threshold="v > v_t", reset="v = v_r", method="exponential_euler",
                            namespace=namespace, dt=clock)
    neuron.v = -74 * b2.mV
    steps, channels = np.nonzero(x[:, 0].numpy())
    inputs = b2.SpikeGeneratorGroup(x.shape[2], channels, steps * clock, dt=clock)
    synapses = b2.Synapses(inputs, neuron,
                           "w : 1\ndxtrace/dt = -xtrace / tau_plus : 1 (event-driven)\n"
                           "dytrace/dt = -ytrace / tau_minus : 1 (event-driven)",
                           on_pre="g_post += w\nw = clip(w - A_minus * ytrace, 0, w_max)\nxtrace += 1",
                           on_post="w = clip(w + A_plus * xtrace, 0, w_max)\nytrace += 1",
                           namespace=namespace, dt=clock)
    synapses.connect()
    synapses.w = w0
    spikes = b2.SpikeMonitor(neuron)
    b2.Network(neuron, inputs, synapses, spikes).run(x.shape[0] * clock)
    return np.round(np.asarray(spikes.t / clock)).astype(int), np.asarray(synapses.w[:])


@pytest.mark.filterwarnings("ignore:.*deprecated")
def test_song_miller_abbott_neuron_and_stdp_equal_brian2(load_example, numpy_codegen) -> None:
    """The example's conductance neuron with cl.rules.STDP attached, step for step against the same
    equations in Brian2 (exponential Euler, default schedule) on identical input spikes: 1000 inputs at
    30 Hz for 150 ms, A+ = 0.1 w_max so that the weights move visibly."""
    sma = load_example("song_miller_abbott")
    n_in, n_steps, dt, w_max = 1000, 1500, 1e-4, 0.01
    a_plus, a_minus = 0.1 * w_max, 0.105 * w_max
    model = sma.ConductanceNeuron(n_in, dt=dt).double()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.w_in.copy_(w_max * torch.rand(1, n_in, generator=gen, dtype=torch.float64))
    w0 = model.w_in.detach()[0].numpy().copy()
    x = (torch.rand(n_steps, 1, n_in, generator=gen, dtype=torch.float64) < 30 * dt).double()
    rule = cl.rules.STDP(A_plus=a_plus, A_minus=a_minus, w_max=w_max)
    fired = np.flatnonzero(cl.Simulator(model, rule, monitors=("spikes",)).run(x).record.spikes[:, 0, 0].numpy())
    b2_fired, b2_w = brian2_conductance_run(numpy_codegen, w0, x, dt, a_plus, a_minus, w_max)

    assert len(fired) >= 5, f"only {len(fired)} output spikes: the comparison would be vacuous"
    assert fired.tolist() == b2_fired.tolist(), "output spike trains differ"
    w = model.w_in.detach()[0].numpy()
    assert np.abs(w - w0).max() > 0.2 * w_max, "STDP barely changed the weights: the comparison would be vacuous"
    np.testing.assert_allclose(w, b2_w, rtol=0, atol=1e-12)


@pytest.mark.parametrize("options, match", [
    (dict(tau_e=0.0), "tau_e must be a finite number > 0"),
    (dict(v_t=float("nan")), "v_t must be a finite voltage"),
    (dict(v_r=-50e-3), "v_r < v_t"),
    (dict(E_e=-60e-3), "E_l < v_t < E_e"),
])
def test_song_miller_abbott_neuron_refuses_bad_parameters(load_example, options, match) -> None:
    sma = load_example("song_miller_abbott")
    with pytest.raises(ValueError, match=match):
        sma.ConductanceNeuron(10, **options)


@pytest.mark.slow
def test_song_miller_abbott_weights_become_bimodal(load_example) -> None:
    """The example's defaults (seed 0, 100 simulated s): the uniform initial weights split into a U-shaped
    distribution piled up at both bounds, and the output rate settles below its initial value.  Measured:
    0.240 near 0, 0.183 near w_max, 0.239 in the middle, density ratios 4.0 and 3.1, rate 40 -> 24 Hz."""
    sma = load_example("song_miller_abbott")
    outcome = sma.simulate(seed=0)
    low, high = sma.near_bounds(outcome.final)
    middle = sma.middle_fraction(outcome.final)
    # a uniform distribution has 0.1 of the weights within 10 % of each bound and 0.4 in (0.3, 0.7) w_max
    assert low > 0.18 and high > 0.14, f"too few weights at the bounds: {low:.3f} near 0, {high:.3f} near w_max"
    assert middle < 0.30, f"{middle:.3f} of the weights remain in (0.3, 0.7) w_max"
    for name, end in (("0", low), ("w_max", high)):
        density_ratio = (end / 0.1) / (middle / 0.4)
        assert density_ratio > 2.0, f"not U-shaped: density near {name} only {density_ratio:.2f}x the middle's"
    early, late = np.mean(outcome.rates[:5]), np.mean(outcome.rates[-10:])
    assert late < 0.8 * early, f"output rate did not settle: {early:.1f} Hz in the first 5 s, {late:.1f} Hz at the end"


# -- reward-modulated STDP -------------------------------------------------------------
def reward_experiment(rewarded: bool, seed: int = 0, batches: int = 30) -> tuple[float, float]:
    """Train two output neurons on 20 Poisson inputs with reward = count_A − count_B per trial
    (``rewarded``) or with a reward drawn independently of the spikes; return the rates (Hz)
    of A and B on fresh inputs after training."""
    model = cl.models.LIF(20, 2, 1, recurrent=False, seed=seed).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.w_in.copy_(0.12 + 0.06 * torch.rand(model.w_in.shape, generator=gen, dtype=torch.float64))
    rule = cl.rules.RewardSTDP(lr=2e-2, A_plus=1.0, A_minus=1.2, tau_c=1.0, baseline_decay=0.5)
    sim = cl.Simulator(model, rule, monitors=("spikes",))

    def inputs(batch: int) -> torch.Tensor:   # 200 ms at 20 Hz per input
        return (torch.rand(200, batch, 20, generator=gen, dtype=torch.float64) < 0.02).double()

    for _ in range(batches):
        counts = sim.run(inputs(16)).record.spikes.double().sum(0)            # [B, 2]
        reward = counts[:, 0] - counts[:, 1] if rewarded else torch.randn(16, generator=gen, dtype=torch.float64)
        rule.reward(reward)
    rates = cl.Simulator(model, None, monitors=("spikes",)).run(inputs(64)).record.spikes.double().mean((0, 1))
    return float(rates[0]) / DT, float(rates[1]) / DT


def test_reward_modulated_stdp_learns_to_favour_neuron_a() -> None:
    rate_a, rate_b = reward_experiment(rewarded=True)
    control_a, control_b = reward_experiment(rewarded=False)
    assert rate_a - rate_b > 20.0, f"rewarded: A {rate_a:.1f} Hz vs B {rate_b:.1f} Hz"
    assert abs(control_a - control_b) < 5.0, f"control: A {control_a:.1f} Hz vs B {control_b:.1f} Hz"
    assert rate_a - rate_b > 4 * abs(control_a - control_b)


def test_reward_fn_is_applied_at_the_end_of_a_run() -> None:
    model, x = recurrent_network(1)
    before = model.w_in.detach().clone()
    rule = cl.rules.RewardSTDP(lr=1e-2, reward_fn=lambda outputs, target: torch.tensor([1.0]))
    cl.Simulator(model, rule).run(x)
    assert torch.equal(model.w_in, before), "the first reward is its own baseline: no change"
    assert rule.baseline == pytest.approx(1.0)
    rule.reward(3.0)   # advantage 2 on the eligibility left by the run
    expected = (before + 1e-2 * 2.0 * rule.eligibility["in"][0]).clamp(0.0, 1.0)
    torch.testing.assert_close(model.w_in.detach(), expected, rtol=0, atol=1e-12)


# -- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: cl.rules.STDP(A_plus=-0.1), "A_plus must be a finite number >= 0"),
    (lambda: cl.rules.STDP(A_minus=-0.1), "A_minus must be a finite number >= 0"),
    (lambda: cl.rules.STDP(tau_plus=-20e-3), "tau_plus must be a finite number > 0"),
    (lambda: cl.rules.STDP(tau_minus=0.0), "tau_minus must be a finite number > 0"),
    (lambda: cl.rules.STDP(w_min=1.0, w_max=1.0), "w_min must be < w_max"),
    (lambda: cl.rules.STDP(w_min=2.0, w_max=1.0), "w_min must be < w_max"),
    (lambda: cl.rules.STDP(weight_dependence="soft"), "weight_dependence must be one of"),
    (lambda: cl.rules.STDP(pairing="first"), "pairing must be one of"),
    (lambda: cl.rules.STDP(weights="out"), "weights must be one of"),
    (lambda: cl.rules.STDP(weights=()), "weights must be a non-empty selection"),
    (lambda: cl.rules.TripletSTDP(A3_plus=-1e-3), "A3_plus must be a finite number >= 0"),
    (lambda: cl.rules.TripletSTDP(tau_y=-1.0), "tau_y must be a finite number > 0"),
    (lambda: cl.rules.RewardSTDP(tau_c=0.0), "tau_c must be a finite number > 0"),
    (lambda: cl.rules.RewardSTDP(lr=-1.0), "lr must be a finite number > 0"),
    (lambda: cl.Simulator(cl.models.LIF(3, 2, 1), cl.rules.STDP(plastic_inputs=[0, 3])),
     "plastic_inputs must be a non-empty list of input channels in \\[0, 3\\)"),
])
def test_bad_parameters_are_refused_naming_the_argument(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_models_and_inputs_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot train a RateRNN"):
        cl.Simulator(cl.models.RateRNN(2, 4, 1), cl.rules.STDP())
    with pytest.raises(ValueError, match="surrogate='smooth'"):
        cl.Simulator(cl.models.LIF(2, 4, 1, surrogate="smooth"), cl.rules.STDP())
    with pytest.raises(ValueError, match="weights includes 'rec'"):
        cl.Simulator(cl.models.LIF(2, 4, 1, recurrent=False), cl.rules.STDP(weights=("in", "rec")))
    model, x = recurrent_network(2)
    sim = cl.Simulator(model, cl.rules.STDP())
    with pytest.raises(ValueError, match="x must hold input spikes"):
        sim.run(0.5 * x)
    with pytest.raises(ValueError, match=r"model.w_in has weights in .* outside the rule's bounds"):
        cl.Simulator(model, cl.rules.STDP(w_min=0.1)).run(x)
    rule = cl.rules.RewardSTDP()
    with pytest.raises(RuntimeError, match="reward\\(\\) needs the eligibility of a run"):
        rule.reward(1.0)
    cl.Simulator(model, rule).run(torch.cat([x, x], 1))
    with pytest.raises(ValueError, match="one reward per trial \\(2\\)"):
        rule.reward(torch.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        rule.reward(float("nan"))
