"""Weight perturbation, single-step node perturbation and forward gradient.

Independent checks: unbiasedness against the autograd gradient (cosine of
the K-sample mean), and the variance expressions derived for Gaussian
directions u ~ N(0, I) (first order in σ, exact for the forward gradient):

- weight perturbation / weight forward gradient, d = number of parameters:
      E‖ĝ − g‖² = (d + 1)‖g‖²
- node perturbation / activity forward gradient, with g_a = ∂L/∂a over all
  perturbed units and H_l = [h_{l-1}, 1] the clean presynaptic rows:
      E‖ĝ − g‖² = ‖g_a‖² Σ_l n_l ‖H_l‖²_F + ‖g‖²
"""
from __future__ import annotations

import pytest
import torch

import creditlab as cl
from creditlab.models.mlp import MLPState
from creditlab.rules import ForwardGradient, SingleStepNodePerturbation, WeightPerturbation

DT = torch.float64


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-7, atol: float = 1e-9) -> None:
    # torch.allclose rather than torch.testing.assert_close, whose first call imports torch.distributed
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual - expected).abs().max()


def small_problem(hidden: int = 5, batch: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    net = cl.models.MLP([3, hidden, 2], activation="tanh", seed=seed).to(DT)
    x = torch.randn(batch, 3, generator=gen, dtype=DT)
    y = torch.randn(batch, 2, generator=gen, dtype=DT)
    return net, x, y


def flat(grads: dict[str, torch.Tensor], names) -> torch.Tensor:
    return torch.cat([grads[n].reshape(-1) for n in names])


@pytest.mark.parametrize("make_rule", [
    lambda: WeightPerturbation(sigma=1e-4, n_samples=3000, seed=1),
    lambda: WeightPerturbation(sigma=1e-2, n_samples=3000, antithetic=True, seed=1),
    lambda: SingleStepNodePerturbation(sigma=1e-4, n_samples=3000, seed=1),
    lambda: SingleStepNodePerturbation(sigma=1e-2, n_samples=3000, antithetic=True, seed=1),
    lambda: ForwardGradient("weights", n_samples=3000, seed=1),
    lambda: ForwardGradient("activities", n_samples=3000, seed=1),
], ids=["wp", "wp-antithetic", "np", "np-antithetic", "fg-weights", "fg-activities"])
def test_mean_estimate_is_aligned_with_the_gradient(make_rule):
    net, x, y = small_problem()
    alignment = cl.rules.rule_alignment(net, make_rule(), x, y)
    assert alignment.cosine >= 0.95, alignment


def test_estimate_goes_into_p_grad_and_accumulates():
    net, x, y = small_problem()
    rule = ForwardGradient("activities", n_samples=4, seed=3)
    sim = cl.Simulator(net, rule)
    sim.run(x, y)
    first = {n: p.grad.clone() for n, p in net.named_parameters()}
    rule.generator.manual_seed(3)
    sim.run(x, y)
    for n, p in net.named_parameters():
        assert_close(p.grad, 2 * first[n])


def mean_squared_error_of_estimates(net, make_rule, x, y, repeats: int, n_samples: int) -> float:
    """n_samples · E‖ḡ_K − g‖², i.e. the single-sample error E‖ĝ − g‖²."""
    exact = cl.rules.exact_gradient(net, x, y)
    names = list(exact)
    g = flat(exact, names)
    errors = []
    for r in range(repeats):
        estimate = cl.rules.rule_estimate(net, make_rule(n_samples, r), x, y)
        errors.append(float(((flat(estimate, names) - g) ** 2).sum()))
    return n_samples * sum(errors) / repeats


def test_weight_space_variance_grows_as_d_plus_one():
    def make_rule(k, s):
        return WeightPerturbation(sigma=1e-5, n_samples=k, seed=s)

    ratios = []
    for hidden in (2, 8, 32):
        net, x, y = small_problem(hidden=hidden, batch=3, seed=hidden)
        g2 = float(sum((g ** 2).sum() for g in cl.rules.exact_gradient(net, x, y).values()))
        d = sum(p.numel() for p in net.parameters())
        measured = mean_squared_error_of_estimates(net, make_rule, x, y, repeats=50, n_samples=32) / g2
        ratios.append(measured / (d + 1))
    assert all(0.75 < r < 1.25 for r in ratios), ratios


def node_space_prediction(net, x, y) -> float:
    """‖g_a‖² Σ_l n_l ‖H_l‖²_F + ‖g‖² from autograd's ∂L/∂a_l and the clean activities."""
    zeros = tuple(torch.zeros(x.shape[0], n, dtype=DT, requires_grad=True) for n in net.sizes[1:])
    out, _, local = net.step(x, MLPState(), noise=zeros)
    grads_a = torch.autograd.grad(((out - y) ** 2).mean(), zeros)
    ga2 = sum(float((ga ** 2).sum()) for ga in grads_a)
    h_norms = [float((h.detach() ** 2).sum()) + x.shape[0] for h in local.activities]
    g2 = float(sum((g ** 2).sum() for g in cl.rules.exact_gradient(net, x, y).values()))
    return ga2 * sum(n * h2 for n, h2 in zip(net.sizes[1:], h_norms)) + g2


def test_node_space_variance_matches_the_derivation():
    def make_rule(k, s):
        return SingleStepNodePerturbation(sigma=1e-5, n_samples=k, seed=s)

    ratios = []
    for hidden in (2, 8, 32):
        net, x, y = small_problem(hidden=hidden, batch=2, seed=hidden)
        measured = mean_squared_error_of_estimates(net, make_rule, x, y, repeats=50, n_samples=32)
        ratios.append(measured / node_space_prediction(net, x, y))
    assert all(0.75 < r < 1.25 for r in ratios), ratios


@pytest.mark.parametrize("perturb, make_finite_difference", [
    ("weights", lambda: WeightPerturbation(sigma=1e-6, n_samples=5, seed=4)),
    ("activities", lambda: SingleStepNodePerturbation(sigma=1e-6, n_samples=5, seed=4)),
])
def test_forward_gradient_is_the_small_sigma_limit_of_perturbation(perturb, make_finite_difference):
    """Same directions, exact directional derivative: the variance results carry over."""
    net, x, y = small_problem(batch=3)
    forward = cl.rules.rule_estimate(net, ForwardGradient(perturb, n_samples=5, seed=4), x, y)
    finite = cl.rules.rule_estimate(net, make_finite_difference(), x, y)
    for name in forward:
        assert_close(finite[name], forward[name], rtol=1e-4, atol=1e-7)


def test_node_perturbation_has_lower_variance_than_weight_perturbation():
    net, x, y = small_problem(hidden=32, batch=2, seed=1)
    wp = mean_squared_error_of_estimates(
        net, lambda k, s: WeightPerturbation(sigma=1e-5, n_samples=k, seed=s), x, y, repeats=40, n_samples=8)
    np_ = mean_squared_error_of_estimates(
        net, lambda k, s: SingleStepNodePerturbation(sigma=1e-5, n_samples=k, seed=s), x, y,
        repeats=40, n_samples=8)
    assert np_ < wp / 2


@pytest.mark.parametrize("make_rule", [
    lambda: WeightPerturbation(sigma=1e-3, n_samples=32, antithetic=True, seed=0),
    lambda: SingleStepNodePerturbation(sigma=1e-3, n_samples=32, seed=0),
    lambda: ForwardGradient("weights", n_samples=8, seed=0),
    lambda: ForwardGradient("activities", n_samples=8, seed=0),
], ids=["wp", "np", "fg-weights", "fg-activities"])
def test_rule_learns_a_teacher_network(make_rule):
    teacher = cl.models.MLP([4, 6, 2], activation="tanh", seed=11)
    student = cl.models.MLP([4, 6, 2], activation="tanh", seed=12)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = teacher(x)
    sim = cl.Simulator(student, make_rule())
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    first = float(sim.run(x, y).loss)
    for _ in range(100):
        opt.zero_grad()
        sim.run(x, y)
        opt.step()
    with torch.no_grad():
        final = float(((student(x) - y) ** 2).mean())
    assert final < 0.3 * first, (first, final)


def test_mlp_noise_as_tensor_or_per_layer_tuple():
    net, x, _ = small_problem(hidden=5)
    xi = torch.randn(x.shape[0], net.n_units, dtype=DT)
    per_layer = tuple(xi.split(net.sizes[1:], dim=-1))
    y_tensor = net.step(x, MLPState(), noise=xi)[0]
    y_tuple = net.step(x, MLPState(), noise=per_layer)[0]
    assert_close(y_tensor, y_tuple)
    assert_close(y_tuple, net.layers[1](torch.tanh(net.layers[0](x) + per_layer[0])) + per_layer[1])
    with pytest.raises(ValueError, match="one perturbation per layer"):
        net.step(x, MLPState(), noise=per_layer[:1])
    with pytest.raises(ValueError, match="n_units"):
        net.step(x, MLPState(), noise=xi[:, :3])


@pytest.mark.parametrize("make", [
    lambda: WeightPerturbation(sigma=0.0),
    lambda: WeightPerturbation(sigma=-1.0),
    lambda: SingleStepNodePerturbation(sigma=float("nan")),
    lambda: WeightPerturbation(n_samples=0),
    lambda: SingleStepNodePerturbation(n_samples=0),
    lambda: ForwardGradient(n_samples=0),
    lambda: ForwardGradient(perturb="nodes"),
])
def test_bad_hyperparameters_are_refused(make):
    with pytest.raises(ValueError, match="sigma|n_samples|perturb"):
        make()


def test_non_mlp_models_and_missing_targets_are_refused():
    rate = cl.models.RateRNN(n_in=2, n_rec=4, n_out=1)
    with pytest.raises(TypeError, match="feedforward"):
        cl.Simulator(rate, WeightPerturbation())
    conv = cl.models.ConvNet(in_shape=(1, 8, 8), channels=(2, 2), n_out=3)
    for rule in (WeightPerturbation(), SingleStepNodePerturbation(), ForwardGradient()):
        with pytest.raises(TypeError, match="BPTT"):
            cl.Simulator(conv, rule)
    net, x, _ = small_problem()
    with pytest.raises(ValueError, match="target"):
        cl.Simulator(net, SingleStepNodePerturbation()).run(x)


def test_forward_gradient_refuses_a_non_differentiable_activation(sign_mlp):
    with pytest.raises(ValueError, match="differentiates the activation.*'sign'"):
        cl.Simulator(sign_mlp([2, 3, 1]), ForwardGradient())
    # perturbation rules only need loss values, so they accept it
    cl.Simulator(sign_mlp([2, 3, 1]), SingleStepNodePerturbation())
