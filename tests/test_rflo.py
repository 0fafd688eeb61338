"""RFLO (Murray 2019): its equations by hand, exactness where its truncation vanishes,
alignment with BPTT, learning, and the trajectory-task reproduction."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import creditlab as cl
from creditlab.rules import RFLO, exact_gradient, rule_alignment, rule_estimate


def _numpy_rflo(net: cl.models.RateRNN, feedback: np.ndarray, x: np.ndarray, target: np.ndarray,
                tau_e: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """RFLO's estimate and recurrent eligibility e_ij^t, from the equations, in numpy."""
    w_in, w_rec, b, w_out, b_out = (p.detach().numpy() for p in (net.w_in, net.w_rec, net.b, net.w_out, net.b_out))
    lam, lam_e = net.dt / net.tau, net.dt / tau_e
    n_steps, batch, _ = x.shape
    h = np.zeros((batch, net.n_rec))
    r = np.tanh(h)
    rbar, ubar, cbar = np.zeros_like(h), np.zeros((batch, net.n_in)), 0.0
    grads = {n: np.zeros_like(w) for n, w in (("w_in", w_in), ("w_rec", w_rec), ("b", b),
                                                ("w_out", w_out), ("b_out", b_out))}
    eligibility = []
    for t in range(n_steps):
        u = x[t]
        rbar = (1 - lam_e) * rbar + lam_e * r           # presynaptic rate r^t, before the step
        ubar = (1 - lam_e) * ubar + lam_e * u
        cbar = (1 - lam_e) * cbar + lam_e
        h = (1 - lam) * h + lam * (r @ w_rec.T + u @ w_in.T + b)
        r = np.tanh(h)
        y = r @ w_out.T + b_out
        dl_dy = 2 * (y - target[t]) / (n_steps * y.size)     # ∂ℓ_t/∂y_t of the mean squared error
        dphi = 1 - r ** 2
        post = (dl_dy @ feedback.T) * dphi
        eligibility.append(dphi[:, :, None] * rbar[:, None, :])
        grads["w_rec"] += post.T @ rbar
        grads["w_in"] += post.T @ ubar
        grads["b"] += cbar * post.sum(0)
        grads["w_out"] += dl_dy.T @ r
        grads["b_out"] += dl_dy.sum(0)
    return grads, np.stack(eligibility)


def test_three_neuron_example_matches_the_equations() -> None:
    torch.manual_seed(0)
    net = cl.models.RateRNN(2, 3, 2, tau=4e-3, dt=1e-3, seed=3).double()
    with torch.no_grad():
        net.b.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = torch.randn(12, 2, 2, dtype=torch.float64)
    target = torch.randn(12, 2, 2, dtype=torch.float64)
    rule = RFLO(tau_e=8e-3, seed=5)
    synapses = [(0, 1), (2, 0), (1, 1)]
    sim = cl.Simulator(net, rule, monitors=[cl.Monitor("eligibility", synapses=synapses)])
    for p in net.parameters():
        p.grad = None
    result = sim.run(x, target=target)
    expected, eligibility = _numpy_rflo(net, rule.feedback_matrix.double().numpy(), x.numpy(),
                                        target.numpy(), tau_e=8e-3)
    for name, grad in expected.items():
        np.testing.assert_allclose(getattr(net, name).grad.numpy(), grad, rtol=1e-10, atol=1e-14)
    post, pre = zip(*synapses)
    np.testing.assert_allclose(result.record.eligibility.numpy(), eligibility[:, :, list(post), list(pre)],
                               rtol=1e-10, atol=1e-14)


def test_symmetric_feedback_is_exact_without_recurrent_weights() -> None:
    # the term RFLO drops, Σ_l W_kl φ'(h_l) M_l, vanishes when W = 0
    net = cl.models.RateRNN(3, 6, 2, tau=5e-3, dt=1e-3, seed=1).double()
    with torch.no_grad():
        net.w_rec.zero_()
    x = torch.randn(25, 4, 3, dtype=torch.float64)
    target = torch.randn(25, 4, 2, dtype=torch.float64)
    estimate = rule_estimate(net, RFLO(feedback="symmetric"), x, target)
    reference = exact_gradient(net, x, target)
    for name, grad in reference.items():
        torch.testing.assert_close(estimate[name], grad, rtol=1e-10, atol=1e-14)


def test_positive_alignment_with_bptt() -> None:
    overall, recurrent = [], []
    for seed in range(6):
        torch.manual_seed(seed)
        net = cl.models.RateRNN(3, 20, 2, tau=10e-3, dt=1e-3, seed=seed)
        x, target = torch.randn(40, 8, 3), 0.5 * torch.randn(40, 8, 2)
        overall.append(rule_alignment(net, RFLO(feedback="random", seed=seed), x, target).cosine)
        recurrent.append(rule_alignment(net, RFLO(feedback="symmetric"), x, target).per_parameter["w_rec"])
    assert sum(overall) / len(overall) > 0.3, overall
    # with W_outᵀ as feedback only the truncation separates RFLO from the gradient
    assert min(recurrent) > 0.2 and sum(recurrent) / len(recurrent) > 0.5, recurrent


def _sine_task(n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(n_steps, 1, 1)
    x[:3] = 1.0
    s = 2 * math.pi * torch.arange(1, n_steps + 1) / n_steps
    return x, 0.8 * torch.stack([torch.sin(s), torch.cos(2 * s)], -1).unsqueeze(1)


def _train(net: cl.models.RateRNN, rule: RFLO, steps: int, lr: float) -> list[float]:
    x, target = _sine_task(40)
    sim = cl.Simulator(net, rule)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        losses.append(float(sim.run(x, target=target).loss))
        opt.step()
        opt.zero_grad()
    return losses


def test_learns_a_small_trajectory() -> None:
    torch.manual_seed(0)
    net = cl.models.RateRNN(1, 24, 2, tau=5e-3, dt=1e-3, g=0.8, seed=0)
    losses = _train(net, RFLO(feedback="random", seed=0), steps=200, lr=3e-3)
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])


def test_recurrent_credit_alone_reduces_the_loss() -> None:
    # readout frozen: every improvement comes through the traces of w_in, w_rec, b
    torch.manual_seed(1)
    net = cl.models.RateRNN(1, 24, 2, tau=5e-3, dt=1e-3, g=1.2, seed=1)
    net.w_out.requires_grad_(False)
    net.b_out.requires_grad_(False)
    w_out = net.w_out.detach().clone()
    losses = _train(net, RFLO(feedback="symmetric"), steps=100, lr=1e-2)
    assert torch.equal(net.w_out, w_out)
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_random_feedback_is_fixed_across_attachments() -> None:
    net = cl.models.RateRNN(1, 5, 2)
    rule = RFLO()
    cl.Simulator(net, rule)
    first = rule.feedback_matrix.clone()
    cl.Simulator(net, rule)
    assert first.shape == (5, 2) and torch.equal(rule.feedback_matrix, first)
    seeded = [RFLO(seed=7) for _ in range(2)]
    for r in seeded:
        cl.Simulator(net, r)
    assert torch.equal(seeded[0].feedback_matrix, seeded[1].feedback_matrix)


def test_refuses_models_it_cannot_train() -> None:
    with pytest.raises(TypeError, match="EProp"):
        cl.Simulator(cl.models.LIF(2, 4, 1), RFLO())
    with pytest.raises(TypeError, match="feed-forward"):
        cl.Simulator(cl.models.MLP([3, 4, 2]), RFLO())


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="feedback must be one of 'random', 'symmetric'"):
        RFLO(feedback="transpose")
    with pytest.raises(ValueError, match="tau_e"):
        RFLO(tau_e=-1.0)
    with pytest.raises(TypeError, match="seed"):
        RFLO(seed=1.5)
    with pytest.raises(ValueError, match="tau_e must be >= the model's dt"):
        cl.Simulator(cl.models.RateRNN(1, 3, 1, dt=1e-3), RFLO(tau_e=1e-4))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trajectory_reproduction_orders_the_methods(load_example, seed: int) -> None:
    # Murray 2019 Fig. 2: RFLO's final error lies between readout-only learning and BPTT.
    # examples/rflo_trajectory.py defaults: N=50, T=100, 800 trials, Adam lr 1e-3, readout scale 0.1
    finals = load_example("rflo_trajectory").compare(seed=seed)
    assert finals["bptt"] < finals["rflo"] < finals["output"], finals
    # recurrent credit, not just a better readout: RFLO removes most of the readout-only error
    assert finals["rflo"] < 0.6 * finals["output"], finals
