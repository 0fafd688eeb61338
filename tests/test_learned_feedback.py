"""Learned feedback (Lansdell, Prakash & Kording 2019) against its own theorems and against FA."""
from __future__ import annotations

import copy
import functools

import pytest
import torch

import creditlab as cl
from creditlab.losses import MSE, CrossEntropy
from creditlab.rules import FA, LearnedFeedback
from creditlab.rules.learned_feedback import per_example_losses, relative_error


def _prepared(rule, net, x, target, loss):
    rule.attach(net)
    rule.begin(net, x[None], target, loss)
    y, _, local = net.step(x, net.init_state(x.shape[0]))
    return y, local


@pytest.mark.parametrize("activation", ["sigmoid", ("tanh", "linear")])
def test_node_perturbation_estimates_the_activity_gradient(activation):
    """E[(ℓ̃ − ℓ) ξ / c_h] = ∂ℓ/∂h_i up to O(c_h) (their eq. 3), for every hidden layer at once."""
    torch.manual_seed(0)
    net = cl.models.MLP([5, 6, 4, 3], activation=activation, seed=2).double()
    x0 = torch.randn(1, 5, dtype=torch.float64)
    label = torch.tensor([1])
    loss = CrossEntropy()
    # exact per-example ∂ℓ/∂h_i by autograd
    f1, f2 = (torch.sigmoid, torch.sigmoid) if activation == "sigmoid" else (torch.tanh, lambda a: a)
    h1 = f1(net.layers[0](x0))
    h2 = f2(net.layers[1](h1))
    h1.retain_grad()
    h2.retain_grad()
    loss(net.layers[2](h2), label).backward()
    n = 40000
    rule = LearnedFeedback(noise_std=1e-3)
    y, local = _prepared(rule, net, x0.expand(n, 5), label.expand(n), loss)
    with torch.no_grad():
        estimates = [lam.mean(0) for lam in rule.node_perturbation(local, y)]
    for estimate, exact in zip(estimates, (h1.grad[0], h2.grad[0])):
        assert torch.nn.functional.cosine_similarity(estimate, exact, dim=0) > 0.97
        assert float((estimate - exact).norm() / exact.norm()) < 0.25


def test_per_example_losses_match_the_batch_mean():
    y = torch.randn(7, 4)
    labels = torch.randint(0, 4, (7,))
    for loss, target in ((CrossEntropy(), labels), (MSE(), torch.randn(7, 4))):
        per = per_example_losses(loss, y, target)
        assert per.shape == (7,)
        torch.testing.assert_close(per.mean(), loss(y, target))


@functools.lru_cache(maxsize=None)
def _fitted(mode, activation, steps=300, seed=0):
    return _fit_feedback_with_frozen_weights(mode, activation, steps, seed)


def _fit_feedback_with_frozen_weights(mode, activation, steps, seed):
    """Run the rule without stepping any optimizer: only B learns, W is fixed."""
    # widths shrink towards the output so the errors that B is regressed on are full rank (their A3)
    sizes = [8, 6, 5, 5]
    torch.manual_seed(seed)
    net = cl.models.MLP(sizes, activation=activation, seed=seed)
    rule = LearnedFeedback(mode=mode, noise_std=1e-2, feedback_lr=0.2, seed=seed)
    sim = cl.Simulator(net, rule)
    g = torch.Generator().manual_seed(seed)
    loss = MSE()
    for _ in range(steps):
        x = torch.randn(64, sizes[0], generator=g)
        sim.run(x, torch.randn(64, sizes[-1], generator=g), loss)
        for p in net.parameters():
            p.grad = None
    return net, rule


def test_layerwise_feedback_converges_to_forward_weights():
    """Theorems 1–2: B_{i+1} → W_{i+1} (top layer for any f; all layers for a linear net)."""
    net, rule = _fitted("layerwise", "linear")
    errors = [relative_error(b, layer.weight.detach()) for b, layer in zip(rule.feedback, net.layers[1:])]
    assert all(e < 0.3 for e in errors), errors
    net, rule = _fitted("layerwise", "sigmoid")
    assert relative_error(rule.feedback[-1], net.layers[-1].weight.detach()) < 0.2


def test_direct_feedback_converges_to_weight_products():
    """Corollary 1 (linear net): B_{i+1} → W_L ⋯ W_{i+1}."""
    net, rule = _fitted("direct", "linear")
    w = [layer.weight.detach() for layer in net.layers]
    products = [w[2] @ w[1], w[2]]
    errors = [relative_error(b, v) for b, v in zip(rule.feedback, products)]
    assert all(e < 0.3 for e in errors), errors


def _teacher_run(rule, epochs=6, seed=0):
    """Train 20-16-10-10 sigmoid on a teacher task; return the mismatch before/after each epoch, accuracy."""
    sizes = [20, 16, 10, 10]
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, sizes[0], generator=g)
    labels = (x @ torch.randn(sizes[0], sizes[-1], generator=g)).argmax(-1)
    net = cl.models.MLP(sizes, activation="sigmoid", seed=seed)
    sim = cl.Simulator(net, rule)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss = CrossEntropy()
    history = [_mismatch(net, rule)]
    for _ in range(epochs):
        for i in range(0, len(x), 32):
            sim.run(x[i:i + 32], labels[i:i + 32], loss)
            opt.step()
            opt.zero_grad()
        history.append(_mismatch(net, rule))
    with torch.no_grad():
        accuracy = float((net(x).argmax(-1) == labels).float().mean())
    return history, accuracy


def _mismatch(net, rule):
    """Mean ‖B − W‖/‖W‖ over layers 2…L (FA stores Wᵀ's shape)."""
    errors = []
    for b, layer in zip(rule.feedback, net.layers[1:]):
        w = layer.weight.detach()
        errors.append(relative_error(b if b.shape == w.shape else b.t(), w))
    return sum(errors) / len(errors)


def test_learned_feedback_tracks_weights_better_than_feedback_alignment():
    """Lansdell et al. Fig. 1A: ‖B − W‖/‖W‖ falls during training and ends below FA's."""
    learned, learned_accuracy = _teacher_run(LearnedFeedback(noise_std=1e-2, feedback_lr=1.0, seed=0))
    fixed, fa_accuracy = _teacher_run(FA(seed=0))
    assert learned[-1] < 0.6 * learned[0]
    assert learned[-1] < 0.75 * fixed[-1]
    assert learned_accuracy > 0.3 and fa_accuracy > 0.2   # chance is 0.1


@pytest.mark.parametrize("mode", ["layerwise", "direct"])
def test_learned_feedback_rule_alignment_is_high_after_fitting(mode):
    net, rule = copy.deepcopy(_fitted(mode, "linear"))
    x, target = torch.randn(32, 8), torch.randn(32, 5)
    alignment = cl.rules.rule_alignment(net, rule, x, target, MSE())
    assert alignment.cosine > 0.95


def test_learned_feedback_refuses_bad_input():
    with pytest.raises(ValueError, match="mode must be one of 'layerwise', 'direct'"):
        LearnedFeedback(mode="global")
    with pytest.raises(ValueError, match="noise_std must be a finite number > 0"):
        LearnedFeedback(noise_std=0.0)
    with pytest.raises(ValueError, match="feedback_lr"):
        LearnedFeedback(feedback_lr=-1.0)
    net = cl.models.MLP([4, 5, 3], seed=0)
    sim = cl.Simulator(net, LearnedFeedback())
    with pytest.raises(ValueError, match="single-step rule"):
        sim.run(torch.randn(2, 6, 4), torch.randn(2, 6, 3))
    with pytest.raises(ValueError, match=r"feedback\[0\] must have size 3 on axis 0"):
        cl.Simulator(net, LearnedFeedback(feedback=[torch.zeros(5, 5)]))
