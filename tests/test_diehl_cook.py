"""Diehl & Cook (2015) STDP network: rule, normalisation, thresholds, WTA, labelling."""
from __future__ import annotations

import math

import pytest
import torch

import creditlab as cl
from creditlab.models.diehl_cook import (DiehlCook, assign_labels, classify, normalize_rows, strongest_crossing,
                                         presynaptic_rule)


def test_presynaptic_rule_matches_equation_by_hand():
    w = torch.tensor([[0.5, 0.2], [0.1, 0.9]])
    x_pre = torch.tensor([[1.0, 0.0]])
    post = torch.tensor([[1.0, 0.0]])            # only neuron 0 spikes
    dw = presynaptic_rule(w, x_pre, post, eta=0.1, x_tar=0.4, w_max=1.0, mu=2.0)
    expected = torch.tensor([[0.1 * 0.6 * 0.5 ** 2, 0.1 * -0.4 * 0.8 ** 2], [0.0, 0.0]])
    torch.testing.assert_close(dw, expected)


def test_presynaptic_rule_averages_over_the_batch():
    w = torch.full((1, 1), 0.5)
    x_pre = torch.tensor([[1.0], [0.2]])
    post = torch.tensor([[1.0], [1.0]])
    dw = presynaptic_rule(w, x_pre, post, eta=1.0, x_tar=0.0, w_max=1.0, mu=1.0)
    torch.testing.assert_close(dw, torch.tensor([[(1.0 + 0.2) / 2 * 0.5]]))


def test_presynaptic_trace_is_the_filtered_input_spike_train():
    net = DiehlCook(n_in=3, n_exc=2, dt=1e-3, tau_pre=20e-3, seed=0)
    gen = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((30, 1, 3), 0.3), generator=gen)
    state = net.init_state(1, traces=True)
    for x_t in x:
        _, state, _ = net.step(x_t, state)
    ages = torch.arange(29, -1, -1, dtype=torch.float32).view(30, 1, 1)
    expected = (x * torch.exp(-ages * 1e-3 / 20e-3)).sum(0)
    torch.testing.assert_close(state.x_pre, expected)


def reference_presentation(net: DiehlCook, spikes: torch.Tensor, learn: bool) -> torch.Tensor:
    """One presentation through the step protocol: W and θ updated after every step with spikes."""
    state = net.init_state(spikes.shape[1], traces=True)
    counts = torch.zeros(spikes.shape[1], net.n_exc)
    for x_t in spikes:
        z, state, locals_ = net.step(x_t, state)
        counts += z
        if learn and bool(z.any()):
            dw = presynaptic_rule(net.w, locals_.x_pre, z, net.eta, net.x_tar, net.w_max, net.mu)
            net.w.copy_((net.w + dw).clamp(0.0, net.w_max))
            net.theta.add_(net.theta_plus * z.mean(0))
    if learn:
        net.theta.mul_(math.exp(-(spikes.shape[0] * net.dt + net.t_rest) / net.tau_theta))
    return counts


@pytest.mark.parametrize("learn, batch", [(True, 1), (True, 3), (False, 4)])
def test_event_driven_presentation_equals_the_step_protocol(learn, batch):
    images = torch.rand(batch, 16, generator=torch.Generator().manual_seed(5))
    spikes = torch.bernoulli((images * 0.3).expand(150, batch, 16), generator=torch.Generator().manual_seed(7))
    runs = []
    for fast in (True, False):
        net = DiehlCook(n_in=16, n_exc=5, weight_total=6.0, eta=0.05, theta_plus=0.3, seed=3)
        with torch.no_grad():
            counts = (net.present_spikes([spikes[:37], spikes[37:]], batch, learn) if fast
                      else reference_presentation(net, spikes, learn))
        runs.append((counts, net.w.detach().clone(), net.theta.clone()))
    assert runs[0][0].sum() >= 5 * batch                 # several post spikes, so learning happened
    for fast, reference in zip(*runs):
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    if learn:
        assert not torch.equal(runs[0][1], DiehlCook(n_in=16, n_exc=5, weight_total=6.0, seed=3).w)


def test_threshold_increment_is_the_batch_mean_of_the_spikes():
    net = DiehlCook(n_in=16, n_exc=4, max_rate=200.0, weight_total=8.0, eta=0.0, theta_plus=0.5,
                    tau_theta=1.0, t_present=0.05, t_rest=0.1, seed=0)
    counts = net.present(torch.rand(3, 16, generator=torch.Generator().manual_seed(1)), learn=True,
                         generator=torch.Generator().manual_seed(0))
    assert counts.sum() > 0
    decay_all = math.exp(-(net.n_present * net.dt + net.t_rest) / net.tau_theta)
    torch.testing.assert_close(net.theta, 0.5 * counts.mean(0) * decay_all)


def test_weight_normalisation_keeps_each_neurons_total_input_fixed():
    w = torch.rand(4, 10)
    w[2] = 0.0
    out = normalize_rows(w, 3.0)
    torch.testing.assert_close(out[[0, 1, 3]].sum(1), torch.full((3,), 3.0))
    assert torch.equal(out[2], torch.zeros(10))
    net = DiehlCook(n_in=16, n_exc=4, max_rate=200.0, weight_total=5.0, eta=0.05, seed=0)
    net.fit(torch.rand(6, 16), batch_size=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net.w.sum(1), torch.full((4,), 5.0))


def test_thresholds_rise_with_each_spike_and_decay_between():
    net = DiehlCook(n_in=16, n_exc=4, max_rate=200.0, weight_total=8.0, eta=0.0, theta_plus=0.5,
                    tau_theta=1.0, t_present=0.05, t_rest=0.1, seed=0)
    counts = net.present(torch.ones(1, 16), learn=True, generator=torch.Generator().manual_seed(0))
    assert counts.sum() > 0
    decay_all = math.exp(-(net.n_present * net.dt + net.t_rest) / net.tau_theta)
    # each spike adds 0.5; θ then decays over the presentation and the rest
    torch.testing.assert_close(net.theta, 0.5 * counts[0] * decay_all)
    before = net.theta.clone()
    silent = net.present(torch.zeros(1, 16), learn=True)
    assert silent.sum() == 0
    torch.testing.assert_close(net.theta, before * decay_all)


def test_lateral_inhibition_makes_few_winners():
    pattern = (torch.rand(1, 64, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    active = {}
    for w_inh in (17.0, 0.0):
        net = DiehlCook(n_in=64, n_exc=30, max_rate=150.0, weight_total=12.0, w_inh=w_inh, seed=1)
        counts = net.present(pattern, generator=torch.Generator().manual_seed(2))
        active[w_inh] = counts[0]
    assert active[0.0].gt(0).sum() >= 20          # without inhibition most neurons fire
    assert 1 <= active[17.0].gt(0).sum() <= 8     # with it, a few of the 30 win
    assert active[17.0].sum() < 0.1 * active[0.0].sum()


def test_tie_break_lets_only_the_furthest_crossing_fire():
    """Two neurons cross threshold in the same step: with tie_break only the one further above it
    fires (and a row with no crossing stays silent); without it both fire."""
    spiking = torch.tensor([[True, True, False], [False, False, False]])
    overshoot = torch.tensor([[0.3, 1.2, -2.0], [-0.1, -0.5, -1.0]])
    assert strongest_crossing(spiking, overshoot).tolist() == [[False, True, False], [False, False, False]]
    fired = {}
    for tie_break in (True, False):
        net = DiehlCook(n_in=2, n_exc=3, tie_break=tie_break, seed=0)
        state = net.init_state(1)
        state = state._replace(v=torch.tensor([[-51.6, -51.0, -60.0]]))   # 0 and 1 above v_thresh = -52
        z, _, _ = net.step(torch.ones(1, 2), state)
        fired[tie_break] = z[0].tolist()
    assert fired[False][:2] == [1.0, 1.0] and fired[True] == [0.0, 1.0, 0.0]


def bars(n_images_each: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four non-overlapping 2-row bars on an 8 × 8 grid, labels 0..3."""
    images = torch.zeros(4, 8, 8)
    for k in range(4):
        images[k, 2 * k:2 * k + 2] = 1.0
    return images.reshape(4, 64).repeat(n_images_each, 1), torch.arange(4).repeat(n_images_each)


def test_bars_are_learned_by_different_neurons_and_classified():
    torch.manual_seed(0)
    train_x, train_y = bars(6)
    net = DiehlCook(n_in=64, n_exc=8, dt=1e-3, max_rate=200.0, weight_total=16.0, eta=0.05,
                    theta_plus=1.0, t_present=0.2, seed=0)
    gen = torch.Generator().manual_seed(0)
    net.fit(train_x, batch_size=4, generator=gen)
    counts = net.responses(train_x[:8], generator=gen)
    labels = assign_labels(counts, train_y[:8], 4)
    winners = counts[:4].argmax(1)
    assert len(set(winners.tolist())) == 4                       # one distinct neuron per bar
    test_x, test_y = bars(3)
    predicted = classify(net.responses(test_x, generator=gen), labels, 4)
    assert torch.equal(predicted, test_y)
    # each bar's winner has learned it: most of its weight lies on that bar
    for k, neuron in enumerate(winners.tolist()):
        assert net.w[neuron, 16 * k:16 * k + 16].sum() > 0.6 * net.weight_total


def test_labelling_and_classification_by_hand():
    counts = torch.tensor([[5.0, 0.0, 0.0], [0.0, 3.0, 0.0], [4.0, 1.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    neuron_labels = assign_labels(counts, labels, 3)
    assert neuron_labels[:2].tolist() == [0, 1]                 # 4.5 vs 0 and 0.5 vs 3
    assert neuron_labels[2] != 2                                # class 2 never shown: never assigned
    test = torch.tensor([[0.0, 2.0, 9.0], [1.0, 0.0, 0.0]])
    assert classify(test, torch.tensor([0, 1, 1]), 3).tolist() == [1, 0]   # class 1 mean 5.5
    assert classify(torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([2, 2, 2]), 3).tolist() == [2]


def test_frozen_network_runs_in_the_engine():
    net = DiehlCook(n_in=10, n_exc=6, max_rate=200.0, weight_total=5.0, seed=0)
    x = torch.bernoulli(torch.full((50, 2, 10), 0.2), generator=torch.Generator().manual_seed(0))
    out = cl.Simulator(net).run(x).outputs
    state = net.init_state(2)
    manual = []
    for x_t in x:
        z, state, _ = net.step(x_t, state)
        manual.append(z)
    torch.testing.assert_close(out, torch.stack(manual))
    assert out.sum() > 0


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_exc=0), "n_exc"), (dict(n_in=-1), "n_in"), (dict(eta=-0.1), "eta"),
    (dict(dt=0.0), "dt"), (dict(tau_theta=0.0), "tau_theta"), (dict(max_rate=5000.0), "max_rate"),
    (dict(v_thresh=-70.0), "v_thresh"), (dict(min_spikes=-1), "min_spikes"),
])
def test_bad_constructor_arguments_are_named(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        DiehlCook(**kwargs)


def test_bad_call_arguments_are_named():
    net = DiehlCook(n_in=4, n_exc=2, seed=0)
    with pytest.raises(ValueError, match="images"):
        net.present(torch.full((1, 4), 2.0))
    with pytest.raises(ValueError, match="images"):
        net.responses(torch.rand(1, 5))
    with pytest.raises(TypeError, match="images"):
        net.fit(torch.ones(1, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="batch_size"):
        net.fit(torch.rand(2, 4), batch_size=0)
    with pytest.raises(ValueError, match="epochs"):
        net.fit(torch.rand(2, 4), epochs=0)
    with pytest.raises(ValueError, match="spikes"):
        net.present_spikes([torch.zeros(10, 2, 4)], batch_size=1)
    with pytest.raises(ValueError, match="labels"):
        assign_labels(torch.rand(2, 2), torch.tensor([0, 5]), 3)
    with pytest.raises(ValueError, match="neuron_labels"):
        classify(torch.rand(2, 2), torch.tensor([0, 1, 1]), 3)
