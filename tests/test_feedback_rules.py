"""Backprop, FA, DFA and Kolen-Pollack on the single-step MLP, checked against autograd."""
from __future__ import annotations

import pytest
import torch

import creditlab as cl
from creditlab.losses import MSE, CrossEntropy
from creditlab.rules import DFA, FA, Backprop, KolenPollack, exact_gradient, rule_alignment, rule_estimate


def _batch(sizes, n=16, classes=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, sizes[0], generator=g, dtype=torch.float64)
    if classes:
        return x, torch.randint(0, sizes[-1], (n,), generator=g), CrossEntropy()
    return x, torch.randn(n, sizes[-1], generator=g, dtype=torch.float64), MSE()


def _net(sizes, activation="tanh", seed=1):
    return cl.models.MLP(sizes, activation=activation, seed=seed).double()


def _assert_same(estimate, reference):
    assert estimate.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(estimate[name], reference[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "linear", ("tanh", "linear"), ("relu", "sigmoid")])
@pytest.mark.parametrize("classes", [True, False])
def test_backprop_equals_autograd(activation, classes):
    sizes = [7, 6, 5, 3]
    net = _net(sizes, activation)
    x, target, loss = _batch(sizes, classes=classes)
    _assert_same(rule_estimate(net, Backprop(), x, target, loss), exact_gradient(net, x, target, loss))


def test_backprop_sums_over_steps_of_a_sequence():
    sizes = [5, 4, 2]
    net = _net(sizes)
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    target = torch.randn(3, 6, 2, dtype=torch.float64)
    _assert_same(rule_estimate(net, Backprop(), x, target, MSE()), exact_gradient(net, x, target, MSE()))


def test_crossentropy_output_error_is_its_gradient():
    y = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 4, (5,))
    loss = CrossEntropy()
    (grad,) = torch.autograd.grad(loss(y, labels), y)
    for t in range(2):
        torch.testing.assert_close(loss.output_error(t, 2, y[t].detach(), labels), grad[t])
    torch.testing.assert_close(loss(y[0], labels), torch.nn.functional.cross_entropy(y[0], labels))


def test_crossentropy_rejects_bad_labels():
    loss = CrossEntropy()
    with pytest.raises(TypeError, match="integer class labels"):
        loss.check_target((4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 2\]"):
        loss.check_target((4, 3), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="target must have"):
        loss.check_target((4, 3), torch.tensor([0, 1]))


def test_fa_with_transposed_weights_is_backprop():
    sizes = [6, 5, 4, 3]
    net = _net(sizes)
    x, target, loss = _batch(sizes)
    transposes = [layer.weight.detach().t() for layer in net.layers[1:]]
    _assert_same(rule_estimate(net, FA(feedback=transposes), x, target, loss),
                 rule_estimate(net, Backprop(), x, target, loss))


def test_dfa_one_hidden_layer_with_transposed_readout_is_backprop():
    sizes = [6, 8, 3]
    net = _net(sizes, "sigmoid")
    x, target, loss = _batch(sizes)
    rule = DFA(feedback=[net.layers[1].weight.detach().t()])
    _assert_same(rule_estimate(net, rule, x, target, loss), exact_gradient(net, x, target, loss))


def test_random_feedback_differs_from_backprop_but_keeps_its_matrices():
    sizes = [6, 5, 4, 3]
    net = _net(sizes)
    x, target, loss = _batch(sizes)
    for rule in (FA(seed=3), DFA(seed=3)):
        first = rule_alignment(net, rule, x, target, loss)
        matrices = [b.clone() for b in rule.feedback]
        second = rule_alignment(net, rule, x, target, loss)
        assert first.cosine == pytest.approx(second.cosine)   # re-attaching keeps B
        assert all(torch.equal(a, b) for a, b in zip(matrices, rule.feedback))
        assert first.cosine < 0.999
        # the readout's gradient needs no feedback, so it is exact
        assert first.per_parameter["layers.2.weight"] == pytest.approx(1.0)


def _teacher_task(sizes, n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, sizes[0], generator=g)
    teacher = torch.randn(sizes[0], sizes[-1], generator=g)
    return x, (x @ teacher).argmax(-1)


def test_kolen_pollack_feedback_converges_to_weight_transpose():
    """With SGD(lr=η) on W, W − Bᵀ shrinks by exactly (1 − ηλ) per step (Akrout et al. 2019),
    and while W learns, ‖B − Wᵀ‖/‖W‖ falls."""
    sizes = [20, 32, 32, 5]
    x, labels = _teacher_task(sizes)
    net = cl.models.MLP(sizes, activation="tanh", seed=0)
    lr, decay = 0.5, 0.05
    rule = KolenPollack(lr=lr, weight_decay=decay, seed=0)
    sim = cl.Simulator(net, rule)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    mismatch0 = [layer.weight.detach() - b.t() for layer, b in zip(net.layers[1:], rule.feedback)]
    relative0 = _kp_relative_error(net, rule)
    steps = 0
    for _ in range(6):
        for i in range(0, len(x), 32):
            sim.run(x[i:i + 32], labels[i:i + 32], CrossEntropy())
            opt.step()
            opt.zero_grad()
            steps += 1
    for m0, layer, b in zip(mismatch0, net.layers[1:], rule.feedback):
        torch.testing.assert_close(layer.weight.detach() - b.t(), m0 * (1 - lr * decay) ** steps,
                                   rtol=1e-4, atol=1e-5)
    relative = _kp_relative_error(net, rule)
    assert all(r0 > 1.0 for r0 in relative0)
    assert all(r < 0.25 for r in relative)


def test_kolen_pollack_under_adamw_decoupled_decay_keeps_the_exact_contraction():
    """weight_decay=0 and AdamW's decay on W and B: identical Adam steps, W − Bᵀ ∝ (1 − ηλ)^t exactly."""
    sizes = [20, 32, 32, 5]
    x, labels = _teacher_task(sizes)
    lr, decay, steps = 1e-2, 2.0, 24

    def mismatch_after(decoupled: bool):
        net = cl.models.MLP(sizes, activation="tanh", seed=0).double()
        rule = KolenPollack(weight_decay=0.0 if decoupled else decay, seed=0)
        sim = cl.Simulator(net, rule)
        opt = (_adamw_on_weights_and_feedback(net, rule, lr, decay) if decoupled
               else torch.optim.Adam([*net.parameters(), *rule.parameters()], lr=lr))
        start = [layer.weight.detach() - b.t() for layer, b in zip(net.layers[1:], rule.feedback)]
        _train_in_batches_of_32(sim, opt, x.double(), labels, steps, n_batches=4)
        return start, [layer.weight.detach() - b.t() for layer, b in zip(net.layers[1:], rule.feedback)]

    start, end = mismatch_after(decoupled=True)
    for m0, m in zip(start, end):
        torch.testing.assert_close(m, m0 * (1 - lr * decay) ** steps, rtol=1e-9, atol=1e-12)
    # coupled L2 under Adam: the decay passes through Adam's 1/√v̂, so the contraction is not (1 − ηλ)^t
    start, coupled = mismatch_after(decoupled=False)
    for m0, m in zip(start, coupled):
        assert abs(float(m.norm()) / float(m0.norm()) - (1 - lr * decay) ** steps) > 0.05


def test_kolen_pollack_aligns_sooner_from_small_initial_weights():
    """W − Bᵀ only decays, while W's learned part is shared with Bᵀ: starting W₀ and B₀ at a tenth
    of their size leaves a tenth of the unshared part, so after the same training ‖B − Wᵀ‖/‖W‖ is
    several times smaller (the benchmark's ``kp-small-init`` row)."""
    sizes = [20, 32, 32, 5]
    x, labels = _teacher_task(sizes)

    def relative_error_after_training(scale: float) -> list[float]:
        net = cl.models.MLP(sizes, activation="tanh", seed=0)
        rule = KolenPollack(weight_decay=0.0, seed=0)
        sim = cl.Simulator(net, rule)
        with torch.no_grad():
            for layer in net.layers:
                layer.weight.mul_(scale)
            for b in rule.feedback:
                b.mul_(scale)
        opt = _adamw_on_weights_and_feedback(net, rule, lr=1e-2, decay=0.1)
        _train_in_batches_of_32(sim, opt, x, labels, steps=48, n_batches=8)
        return _kp_relative_error(net, rule)

    full, small = relative_error_after_training(1.0), relative_error_after_training(0.1)
    assert all(s < 0.3 * f for s, f in zip(small, full)), (small, full)


def _adamw_on_weights_and_feedback(net, rule, lr: float, decay: float) -> torch.optim.AdamW:
    """AdamW with decoupled decay λ on every W and every Kolen-Pollack B, none on the biases."""
    return torch.optim.AdamW([{"params": [layer.weight for layer in net.layers] + rule.parameters(),
                               "weight_decay": decay},
                              {"params": [layer.bias for layer in net.layers], "weight_decay": 0.0}], lr=lr)


def _train_in_batches_of_32(sim, opt, x, labels, steps: int, n_batches: int) -> None:
    """``steps`` optimizer steps cycling through the first ``n_batches`` batches of 32."""
    for step in range(steps):
        i = 32 * (step % n_batches)
        sim.run(x[i:i + 32], labels[i:i + 32], CrossEntropy())
        opt.step()
        opt.zero_grad()


def _kp_relative_error(net, rule):
    return [float((layer.weight.detach() - b.t()).norm() / layer.weight.detach().norm())
            for layer, b in zip(net.layers[1:], rule.feedback)]


@pytest.mark.parametrize("rule", [Backprop(), FA(seed=0), DFA(seed=0), KolenPollack(lr=1e-2, seed=0)],
                         ids=lambda r: r.name)
def test_rule_learns_a_teacher_task(rule):
    sizes = [20, 32, 32, 5]
    x, labels = _teacher_task(sizes)
    net = cl.models.MLP(sizes, activation="tanh", seed=0)
    sim = cl.Simulator(net, rule)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss = CrossEntropy()
    first = float(sim.run(x, labels, loss).loss)
    opt.zero_grad()
    for _ in range(6):
        for i in range(0, len(x), 32):
            sim.run(x[i:i + 32], labels[i:i + 32], loss)
            opt.step()
            opt.zero_grad()
    last = sim.run(x, labels, loss)
    opt.zero_grad()
    accuracy = float((last.outputs.argmax(-1) == labels).float().mean())
    assert float(last.loss) < 0.2 * first
    assert accuracy > 0.95   # chance is 0.2


def test_feedback_rules_refuse_bad_input():
    net = _net([6, 5, 4, 3])
    with pytest.raises(ValueError, match=r"feedback\[0\] must have size 5 on axis 0"):
        cl.Simulator(net, FA(feedback=[torch.zeros(4, 5), torch.zeros(4, 3)]))
    with pytest.raises(ValueError, match="feedback must hold 2 matrices"):
        cl.Simulator(net, DFA(feedback=[torch.zeros(5, 3)]))
    with pytest.raises(TypeError, match="sequence of torch.Tensor"):
        FA(feedback=torch.zeros(5, 4))
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        KolenPollack(lr=0.0)
    with pytest.raises(ValueError, match="weight_decay"):
        KolenPollack(weight_decay=-1.0)
    with pytest.raises(TypeError, match="trains feedforward models"):
        cl.Simulator(cl.models.RateRNN(n_in=2, n_rec=4, n_out=1), FA())
    with pytest.raises(ValueError, match="needs a target"):
        cl.Simulator(net, Backprop()).run(torch.randn(2, 6, dtype=torch.float64))


def test_mlp_takes_one_activation_per_hidden_layer():
    net = _net([4, 5, 3, 2], activation=("relu", "sigmoid"))
    x = torch.randn(6, 4, dtype=torch.float64)
    layers = net.layers
    expected = layers[2](torch.sigmoid(layers[1](torch.relu(layers[0](x)))))
    torch.testing.assert_close(net(x), expected)
    assert net.activations == ("relu", "sigmoid") and net.activation == ("relu", "sigmoid")
    assert _net([4, 5, 3, 2], activation=["tanh", "tanh"]).activation == "tanh"
    with pytest.raises(ValueError, match=r"one activation per hidden layer \(2 for these sizes\), got 3"):
        cl.models.MLP([4, 5, 3, 2], activation=("tanh", "tanh", "tanh"))
    with pytest.raises(ValueError, match=r"activation\[1\] must be one of"):
        cl.models.MLP([4, 5, 3, 2], activation=("tanh", "softplus"))
    with pytest.raises(TypeError, match="activation must be one of"):
        cl.models.MLP([4, 5, 3, 2], activation=3)


def test_feedback_rules_refuse_an_activation_without_a_derivative():
    net = _net([4, 5, 3])
    net.activations = ("heaviside",)
    for rule in (Backprop(), FA(), DFA(), KolenPollack(), cl.rules.LearnedFeedback()):
        with pytest.raises(TypeError, match="needs f′ of the activation"):
            cl.Simulator(net, rule)


def test_kolen_pollack_feedback_parameters_follow_the_optimizer():
    """lr=None: B's gradient is h δᵀ + λB, so SGD on [W, B] equals the rule's own SGD step."""
    sizes = [6, 5, 4, 3]
    x, target, loss = _batch(sizes)
    own, shared = _net(sizes), _net(sizes)
    rule_own = KolenPollack(lr=0.1, weight_decay=0.2, seed=0)
    rule_shared = KolenPollack(weight_decay=0.2, seed=0)
    sim_own, sim_shared = cl.Simulator(own, rule_own), cl.Simulator(shared, rule_shared)
    opt_own = torch.optim.SGD(own.parameters(), lr=0.1)
    opt_shared = torch.optim.SGD([*shared.parameters(), *rule_shared.parameters()], lr=0.1)
    for _ in range(3):
        for sim, opt in ((sim_own, opt_own), (sim_shared, opt_shared)):
            sim.run(x, target, loss)
            opt.step()
            opt.zero_grad()
    for a, b in zip(rule_own.feedback, rule_shared.feedback):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="needs the rule attached first"):
        KolenPollack().parameters()
