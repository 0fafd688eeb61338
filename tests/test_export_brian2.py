"""``cl.export.to_brian2`` against creditlab itself.

The exporter builds the Brian2 network that runs creditlab's discrete LIF/ALIF
dynamics step for step (schedule and constants in creditlab/export/brian2.py).
Here Brian2 (numpy target, float64) simulates the exported network on the
same input spikes and must give

- identical spike trains (and membranes up to summation order) for random
  LIF/ALIF networks with delays and refractoriness;
- identical weights after a run with pair STDP (additive all-to-all,
  multiplicative nearest-spike) and triplet STDP on input and recurrent
  weights — the trace updates and their order within a step agree;

and the exporter refuses what Brian2 cannot express, naming the argument.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch

import creditlab as cl

b2 = pytest.importorskip("brian2")

# Brian2's equation parser calls pyparsing names that newer pyparsing deprecates.
pytestmark = [pytest.mark.filterwarnings("ignore:.*deprecated"), pytest.mark.usefixtures("numpy_codegen")]

N_IN, N_REC, N_STEPS = 20, 30, 300


def network(seed: int, w_in: float, w_rec: float, **options) -> tuple[cl.models.LIF, torch.Tensor]:
    """A float64 network with uniform [0, w) weights and a 5 % Poisson input spike train."""
    model = cl.models.LIF(N_IN, N_REC, 2, seed=seed, **options).double()
    gen = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        model.w_in.copy_(w_in * torch.rand(model.w_in.shape, generator=gen, dtype=torch.float64))
        model.w_rec.copy_(w_rec * torch.rand(model.w_rec.shape, generator=gen, dtype=torch.float64))
    x = (torch.rand(N_STEPS, 1, N_IN, generator=gen, dtype=torch.float64) < 0.05).double()
    return model, x


def run_brian2(model: cl.models.LIF, x: torch.Tensor, rule: cl.rules.Rule | None = None):
    net, handles = cl.export.to_brian2(model, input_spikes=x, rule=rule)
    net.run(handles.duration)
    return handles


STATIC = {
    "lif_delays": (dict(delays=4), 0.6, 0.1),
    "alif_delays_refractory": (dict(adaptive_fraction=0.5, tau_a=80e-3, beta=0.4, delays=3, t_ref=3e-3), 0.8, 0.1),
}


@pytest.mark.parametrize("name", STATIC)
def test_exported_network_spikes_like_creditlab(name: str) -> None:
    options, w_in, w_rec = STATIC[name]
    model, x = network(3, w_in, w_rec, **options)
    # mixed-sign recurrence: inhibition keeps the random network in a moderate regime
    with torch.no_grad():
        model.w_rec.sub_(w_rec / 2)
    with torch.no_grad():
        record = cl.Simulator(model, None, monitors=("spikes", "v")).run(x).record
    z, v = record.spikes[:, 0].numpy(), record.v[:, 0].numpy()
    handles = run_brian2(model, x)

    assert 0.02 < z.mean() < 0.3, f"uninformative firing rate {z.mean():.3f} spikes/step"
    mismatches = np.argwhere(z != handles.spike_trains())
    assert mismatches.size == 0, f"spike trains differ at (step, neuron) {mismatches[:5].tolist()}"
    np.testing.assert_allclose(v, handles.membrane(), rtol=0, atol=1e-10)


PLASTIC = {
    # input channels 12..19 fixed: Brian2's per-synapse ``plastic`` flag
    "pair_additive_some_inputs_fixed": (
        lambda: cl.rules.STDP(A_plus=0.002, A_minus=0.0021, plastic_inputs=range(12)), dict()),
    "pair_multiplicative_nearest_delays": (
        lambda: cl.rules.STDP(A_plus=0.002, A_minus=0.0021, weight_dependence="multiplicative", pairing="nearest"),
        dict(delays=4, adaptive_fraction=0.5, tau_a=60e-3, beta=0.5, t_ref=2e-3)),
    "triplet_delays": (lambda: cl.rules.TripletSTDP(A2_plus=1e-3, A3_plus=2e-4, A2_minus=2e-3, A3_minus=2e-4),
                       dict(delays=4)),
}


@pytest.mark.parametrize("name", PLASTIC)
def test_stdp_weights_equal_brian2(name: str) -> None:
    make_rule, options = PLASTIC[name]
    model, x = network(1, 0.2, 0.03, **options)
    before = {"in": model.w_in.detach().clone(), "rec": model.recurrent_weight().detach().clone()}
    rule = make_rule()
    sim = cl.Simulator(model, rule, monitors=("spikes",))
    net, handles = cl.export.to_brian2(model, input_spikes=x, rule=rule)   # exports the initial weights
    z = sim.run(x).record.spikes[:, 0].numpy()
    net.run(handles.duration)

    assert 0.02 < z.mean() < 0.4, f"uninformative firing rate {z.mean():.3f} spikes/step"
    assert (z == handles.spike_trains()).all(), "spike trains differ"
    after = {"in": model.w_in.detach(), "rec": model.recurrent_weight().detach()}
    for key in ("in", "rec"):
        moved = float((after[key] - before[key]).abs().max())
        assert moved > 0.01, f"STDP barely changed w_{key} ({moved:.2g}): the comparison would be vacuous"
        np.testing.assert_allclose(after[key].numpy(), handles.weights(key), rtol=0, atol=1e-12)
    if rule.plastic_inputs is not None:
        fixed = [c for c in range(N_IN) if c not in rule.plastic_inputs]
        assert torch.equal(after["in"][:, fixed], before["in"][:, fixed])


def test_finer_brian2_clock_keeps_the_firing_rate() -> None:
    """dt = model.dt / 4 simulates the same network at a finer resolution (not step for step)."""
    model, x = network(3, 0.6, 0.1, delays=4)
    with torch.no_grad():
        model.w_rec.sub_(0.05)
        z = cl.Simulator(model, None, monitors=("spikes",)).run(x).record.spikes[:, 0].numpy()
    net, handles = cl.export.to_brian2(model, input_spikes=x, dt=model.dt / 4)
    net.run(handles.duration)
    fine = handles.spike_trains()
    assert fine.shape == (4 * N_STEPS, N_REC)
    assert fine.sum() == pytest.approx(z.sum(), rel=0.25)


# -- refusals -------------------------------------------------------------------------
def test_refuses_models_brian2_cannot_express() -> None:
    with pytest.raises(TypeError, match="model must be a cl.models.LIF.*RateRNN"):
        cl.export.to_brian2(cl.models.RateRNN(2, 8, 1))
    with pytest.raises(TypeError, match="model must be a cl.models.LIF.*MLP"):
        cl.export.to_brian2(cl.models.MLP([4, 8, 2]))
    with pytest.raises(ValueError, match="surrogate='smooth'"):
        cl.export.to_brian2(cl.models.LIF(2, 4, 1, surrogate="smooth"))


def test_refuses_bad_arguments_naming_them() -> None:
    model = cl.models.LIF(3, 4, 1).double()
    with pytest.raises(ValueError, match="input_spikes must hold spikes"):
        cl.export.to_brian2(model, input_spikes=torch.full((10, 3), 0.5))
    with pytest.raises(ValueError, match="input_spikes must have shape"):
        cl.export.to_brian2(model, input_spikes=torch.zeros(10, 5))
    with pytest.raises(ValueError, match="input_spikes must hold one trial"):
        cl.export.to_brian2(model, input_spikes=torch.zeros(10, 2, 3))
    with pytest.raises(ValueError, match="dt must be model.dt"):
        cl.export.to_brian2(model, dt=model.dt * 2)
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        cl.export.to_brian2(model, dt=-1e-3)
    reward = cl.rules.RewardSTDP(w_min=-10.0, w_max=10.0)
    reward.attach(model)
    with pytest.raises(TypeError, match="rule must be None, cl.rules.STDP or cl.rules.TripletSTDP.*RewardSTDP"):
        cl.export.to_brian2(model, rule=reward)
    with pytest.raises(TypeError, match="rule must be None.*EProp"):
        cl.export.to_brian2(model, rule=cl.rules.EProp())
    with pytest.raises(ValueError, match="rule must be attached to this model"):
        cl.export.to_brian2(model, rule=cl.rules.STDP())
