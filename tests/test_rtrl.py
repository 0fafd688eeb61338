"""RTRL is the exact gradient: it must equal BPTT's (autograd through the run)."""
from __future__ import annotations

import pytest
import torch

import creditlab as cl
from creditlab.rules import RTRL, SurrogateGradient, exact_gradient, rule_estimate


def _relative_errors(estimate: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, float]:
    assert set(estimate) == set(reference)
    return {n: float((estimate[n] - reference[n]).norm() / reference[n].norm()) for n in reference}


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_rate_rnn_matches_bptt(activation: str) -> None:
    torch.manual_seed(0)
    net = cl.models.RateRNN(3, 6, 2, tau=5e-3, dt=1e-3, activation=activation, seed=1).double()
    x = torch.randn(30, 4, 3, dtype=torch.float64)
    target = torch.randn(30, 4, 2, dtype=torch.float64)
    errors = _relative_errors(rule_estimate(net, RTRL(), x, target), exact_gradient(net, x, target))
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("adaptive_fraction,t_ref", [(0.0, 0.0), (0.5, 0.0), (0.5, 3e-3)],
                         ids=["LIF", "ALIF", "ALIF-refractory"])
def test_spiking_matches_surrogate_bptt(adaptive_fraction: float, t_ref: float) -> None:
    torch.manual_seed(0)
    net = cl.models.LIF(3, 6, 2, adaptive_fraction=adaptive_fraction, t_ref=t_ref, tau_a=20e-3,
                        surrogate="fast_sigmoid", seed=2).double()
    x = 2.0 * torch.rand(40, 3, 3, dtype=torch.float64)
    target = torch.randn(40, 3, 2, dtype=torch.float64)
    spikes = cl.Simulator(net, monitors="spikes").run(x).record.spikes
    assert 0.05 < spikes.double().mean() < 0.8, "the test network must spike"
    reference = rule_estimate(net, SurrogateGradient("fast_sigmoid"), x, target)
    errors = _relative_errors(rule_estimate(net, RTRL(), x, target), reference)
    assert max(errors.values()) < 1e-6, errors


def test_spiking_with_window_cross_entropy_matches_bptt() -> None:
    torch.manual_seed(3)
    net = cl.models.LIF(4, 5, 3, adaptive_fraction=0.4, tau_a=30e-3, seed=4).double()
    x = 2.0 * torch.rand(30, 5, 4, dtype=torch.float64)
    labels = torch.randint(0, 3, (5,))
    loss = cl.losses.WindowCrossEntropy(window=10)
    errors = _relative_errors(rule_estimate(net, RTRL(), x, labels, loss),
                              exact_gradient(net, x, labels, loss))
    assert max(errors.values()) < 1e-6, errors


def test_frozen_parameters_get_no_influence_and_no_grad() -> None:
    net = cl.models.RateRNN(2, 5, 1, seed=0).double()
    net.w_rec.requires_grad_(False)
    rule = RTRL()
    full = rule.memory_per_example(cl.models.RateRNN(2, 5, 1), torch.float64)
    assert rule.memory_per_example(net, torch.float64) < full
    x = torch.randn(20, 2, 2, dtype=torch.float64)
    target = torch.randn(20, 2, 1, dtype=torch.float64)
    estimate = rule_estimate(net, rule, x, target)
    assert "w_rec" not in estimate
    errors = _relative_errors(estimate, exact_gradient(net, x, target))
    assert max(errors.values()) < 1e-6, errors


def test_accumulates_into_existing_grad() -> None:
    net = cl.models.RateRNN(2, 4, 1, seed=0).double()
    x = torch.randn(10, 2, 2, dtype=torch.float64)
    target = torch.randn(10, 2, 1, dtype=torch.float64)
    sim = cl.Simulator(net, RTRL())
    sim.run(x, target=target)
    once = net.w_rec.grad.clone()
    sim.run(x, target=target)
    torch.testing.assert_close(net.w_rec.grad, 2 * once)


def test_memory_estimate_refuses_large_network_at_attach() -> None:
    net = cl.models.RateRNN(1, 1000, 1)   # w_rec influence alone: 1000³ floats (4 GB) per example
    with pytest.raises(ValueError, match=r"(?s)about 3\.7\d GiB.*max_memory_bytes=2\.00 GiB.*EProp\(\) or RFLO\(\)"):
        cl.Simulator(net, RTRL())


def test_memory_estimate_refuses_large_batch_at_run() -> None:
    net = cl.models.RateRNN(1, 10, 1)
    rule = RTRL(max_memory_bytes=1e6)
    per_example = rule.memory_per_example(net, torch.float32)
    assert per_example == 4 * (10 * 1 + 10 * 10 + 10) * 10
    sim = cl.Simulator(net, rule)
    batch = int(1e6 // per_example) + 1
    with pytest.raises(ValueError, match=rf"batch {batch}.*max_memory_bytes"):
        sim.run(torch.randn(3, batch, 1), target=torch.zeros(3, batch, 1))


def test_refuses_models_it_cannot_train() -> None:
    with pytest.raises(TypeError, match="feed-forward"):
        cl.Simulator(cl.models.MLP([3, 4, 2]), RTRL())
    with pytest.raises(TypeError, match="delays"):
        cl.Simulator(cl.models.LIF(2, 4, 1, delays=2, seed=0), RTRL())


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_memory_bytes"):
        RTRL(max_memory_bytes=0)
    net = cl.models.RateRNN(1, 3, 1)
    with pytest.raises(TypeError, match="sum over time steps"):
        cl.Simulator(net, RTRL()).run(torch.randn(5, 2, 1), target=torch.zeros(5, 2, 1),
                                      loss=lambda out, tgt: ((out - tgt) ** 2).mean())
