"""Predictive coding (Whittington & Bogacz 2017) against autograd backprop."""
from __future__ import annotations

import pytest
import torch

import creditlab as cl
from creditlab.models.mlp import MLPState
from creditlab.rules import PredictiveCoding

DT = torch.float64


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-7, atol: float = 1e-9) -> None:
    # torch.allclose rather than torch.testing.assert_close, whose first call imports torch.distributed
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual - expected).abs().max()


def problem(activation: str = "tanh", seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    net = cl.models.MLP([4, 8, 6, 3], activation=activation, seed=seed).to(DT)
    x = torch.randn(5, 4, generator=gen, dtype=DT)
    y = torch.randn(5, 3, generator=gen, dtype=DT)
    return net, x, y


def norm_ratio(estimate, exact) -> float:
    num = sum(float((estimate[n] ** 2).sum()) for n in exact)
    den = sum(float((exact[n] ** 2).sum()) for n in exact)
    return (num / den) ** 0.5


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", ("sigmoid", "linear")])
def test_converges_to_backprop_with_many_small_inference_steps(activation):
    """Their result: with Σ_out ≫ Σ_hidden and a relaxed network, ΔW_PC ≈ ΔW_BP."""
    net, x, y = problem(activation)
    rule = PredictiveCoding(n_inference=400, inference_rate=0.05, output_variance=100.0)
    alignment = cl.rules.rule_alignment(net, rule, x, y)
    assert alignment.cosine >= 0.99, alignment
    ratio = norm_ratio(cl.rules.rule_estimate(net, rule, x, y), cl.rules.exact_gradient(net, x, y))
    assert 0.97 < ratio < 1.03


def test_agreement_improves_as_output_variance_grows():
    net, x, y = problem("tanh")
    cosines = [cl.rules.rule_alignment(net, PredictiveCoding(200, 0.1, output_variance=v), x, y).cosine
               for v in (1.0, 10.0, 100.0)]
    assert cosines[0] < cosines[1] < cosines[2], cosines


def test_fixed_prediction_equals_backprop_at_equilibrium():
    net, x, y = problem("tanh")
    estimate = cl.rules.rule_estimate(net, PredictiveCoding(150, 0.3, fixed_prediction=True), x, y)
    exact = cl.rules.exact_gradient(net, x, y)
    for name in exact:
        assert_close(estimate[name], exact[name], rtol=1e-6, atol=1e-9)


def classification_problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    net = cl.models.MLP([4, 8, 6, 3], activation="tanh", seed=seed).to(DT)
    x = torch.randn(7, 4, generator=gen, dtype=DT)
    return net, x, torch.randint(0, 3, (7,), generator=gen)


def test_cross_entropy_output_converges_to_backprop():
    """Categorical output energy CE(μ_L)/Σ_L: with Σ_L ≫ 1 the update tends to ∂CE/∂θ (autograd)."""
    net, x, labels = classification_problem()
    loss = cl.losses.CrossEntropy()
    rule = PredictiveCoding(n_inference=400, inference_rate=0.05, output_variance=100.0)
    assert rule_cosine(net, rule, x, labels, loss) >= 0.999
    ratio = norm_ratio(cl.rules.rule_estimate(net, rule, x, labels, loss),
                       cl.rules.exact_gradient(net, x, labels, loss))
    assert 0.97 < ratio < 1.03


def rule_cosine(net, rule, x, target, loss) -> float:
    return cl.rules.rule_alignment(net, rule, x, target, loss).cosine


def assert_fixed_prediction_equals_backprop_under_cross_entropy(net, x, labels) -> None:
    loss = cl.losses.CrossEntropy()
    estimate = cl.rules.rule_estimate(net, PredictiveCoding(150, 0.3, fixed_prediction=True), x, labels, loss)
    exact = cl.rules.exact_gradient(net, x, labels, loss)
    for name in exact:
        assert_close(estimate[name], exact[name], rtol=1e-6, atol=1e-9)


def test_cross_entropy_fixed_prediction_equals_backprop_at_equilibrium():
    assert_fixed_prediction_equals_backprop_under_cross_entropy(*classification_problem(1))


def test_cross_entropy_labels_repeat_over_the_steps_of_a_sequence():
    """A [T, B] input with [B] labels: every step is scored against its trial's label, as autograd does."""
    net, _, labels = classification_problem(2)
    x = torch.randn(3, 7, 4, generator=torch.Generator().manual_seed(3), dtype=DT)
    assert_fixed_prediction_equals_backprop_under_cross_entropy(net, x, labels)


def test_relaxation_descends_the_energy_from_the_feedforward_state():
    net, x, y = problem("sigmoid")
    rule = PredictiveCoding(n_inference=1, inference_rate=0.1)
    cl.Simulator(net, rule)
    _, _, local = net.step(x, MLPState())
    pre = [a.detach() for a in local.preactivations]

    def energy(n_steps: int) -> float:
        rule.n_inference = n_steps
        _, errors = rule.relax(x, y, pre)
        return 0.5 * sum(float((e ** 2).sum()) for e in errors)

    _, first_errors = rule.relax(x, y, pre)
    energies = [energy(n) for n in (1, 5, 20, 100)]
    assert all(b < a for a, b in zip(energies, energies[1:])), energies
    # one step from the feed-forward state: the output error has reached only the top hidden layer
    assert float(first_errors[0].abs().max()) == 0.0


def test_predictive_coding_learns_a_teacher_network():
    teacher = cl.models.MLP([4, 8, 2], activation="tanh", seed=21)
    student = cl.models.MLP([4, 8, 2], activation="tanh", seed=22)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = teacher(x)
    sim = cl.Simulator(student, PredictiveCoding(n_inference=10, inference_rate=0.2))
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    first = float(sim.run(x, y).loss)
    for _ in range(100):
        opt.zero_grad()
        sim.run(x, y)
        opt.step()
    with torch.no_grad():
        final = float(((student(x) - y) ** 2).mean())
    assert final < 0.2 * first, (first, final)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_inference": 0}, "n_inference"),
    ({"inference_rate": 0.0}, "inference_rate"),
    ({"inference_rate": 1.5}, "inference_rate"),
    ({"output_variance": -1.0}, "output_variance"),
])
def test_bad_hyperparameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PredictiveCoding(**kwargs)


def test_models_losses_and_targets_it_cannot_use_are_refused(sign_mlp):
    with pytest.raises(ValueError, match="derivative f'.*'sign'"):
        cl.Simulator(sign_mlp([2, 3, 1]), PredictiveCoding())
    with pytest.raises(TypeError, match="BPTT"):
        cl.Simulator(cl.models.ConvNet(in_shape=(1, 8, 8), channels=(2, 2), n_out=2), PredictiveCoding())
    with pytest.raises(TypeError, match="feedforward"):
        cl.Simulator(cl.models.RateRNN(n_in=2, n_rec=3, n_out=1), PredictiveCoding())
    net = cl.models.MLP([3, 4, 2])
    sim = cl.Simulator(net, PredictiveCoding())
    x = torch.randn(6, 3)
    with pytest.raises(TypeError, match="MSE"):
        sim.run(x[None], torch.zeros(6, dtype=torch.long), loss=cl.losses.WindowCrossEntropy(1))
    with pytest.raises(ValueError, match="target"):
        sim.run(x)


# -- curvature-scaled relaxation steps -----------------------------------------------------------------

def grown_problem(activation: str, gain: float = 4.0, seed: int = 0):
    """A net whose weights training has grown: every layer's W scaled by ``gain``."""
    net, x, y = problem(activation, seed)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(gain)
    return net, x, y


def energy_hessian(net, x, target, output_variance: float, categorical: bool) -> torch.Tensor:
    """∂²F/∂x² by autograd over the hidden nodes of one sample at its feed-forward state, written
    from the energy's definition: F = ½Σ_l‖x_l − W_l φ(x_{l-1}) − b_l‖² + ℓ(μ_L, t)/Σ_L."""
    with torch.no_grad():
        _, _, local = net.step(x, MLPState())
    hidden = [a.detach() for a in local.preactivations[:-1]]
    sizes = [h.numel() for h in hidden]

    def energy(flat: torch.Tensor) -> torch.Tensor:
        nodes = list(torch.split(flat, sizes))
        below, total = x[0], flat.new_zeros(())
        for index, layer in enumerate(net.layers):
            mu = layer(below if index == 0 else net.fs[index - 1](below))
            if index < len(nodes):
                total = total + 0.5 * ((nodes[index] - mu) ** 2).sum()
                below = nodes[index]
            elif categorical:
                total = total + torch.nn.functional.cross_entropy(mu, target[0], reduction="sum") / output_variance
            else:
                total = total + 0.5 * ((target[0] - mu) ** 2).sum() / output_variance
        return total

    return torch.autograd.functional.hessian(energy, torch.cat([h[0] for h in hidden]))


@pytest.mark.parametrize("categorical", [False, True])
def test_curvature_step_bounds_the_energy_hessian(categorical):
    """For a linear net the Gauss-Newton bound is the whole Hessian: D_l ≥ λ_max(H_ll) per layer, and the
    preconditioned Hessian D^{-1/2} H D^{-1/2} has eigenvalues ≤ 2, so every γ < 1 is stable."""
    net, x, y = grown_problem("linear")
    x = x[:1]
    target = torch.tensor([2]) if categorical else y[:1]
    rule = PredictiveCoding(inference_rate=1.0, output_variance=3.0, curvature_step=True)
    rule.attach(net)
    rule.begin(net, x, target, cl.losses.CrossEntropy() if categorical else cl.losses.MSE())
    bounds = [1.0 / step for step in rule.step_sizes()]  # D_l, at γ = 1
    hessian = energy_hessian(net, x, target, 3.0, categorical)
    sizes = net.sizes[1:-1]
    edges = [0, sizes[0], sum(sizes)]
    for bound, start, stop in zip(bounds, edges, edges[1:]):
        assert float(torch.linalg.eigvalsh(hessian[start:stop, start:stop]).max()) <= bound * (1 + 1e-9)
    scale = torch.cat([torch.full((n,), b ** -0.5, dtype=DT) for n, b in zip(sizes, bounds)])
    preconditioned = scale[:, None] * hessian * scale[None, :]
    assert float(torch.linalg.eigvalsh(preconditioned).max()) <= 2.0 + 1e-9
    # the grown weights are what makes the point: a fixed step of 0.5 exceeds 2/λ_max(H)
    assert 0.5 * float(torch.linalg.eigvalsh(hessian).max()) > 2.0


def relaxed_energy(rule: PredictiveCoding, net, x, y, n_steps: int) -> float:
    _, _, local = net.step(x, MLPState())
    rule.n_inference = n_steps
    with torch.no_grad():
        _, errors = rule.relax(x, y, [a.detach() for a in local.preactivations])
    return 0.5 * sum(float((e ** 2).sum()) for e in errors)


def test_curvature_step_descends_where_a_fixed_step_diverges():
    """A linear net with grown weights (‖W‖₂ ≈ 4-7): a fixed γ = 0.5 raises F without bound, the curvature
    step at γ = 0.9 lowers it at every step count (F = ½Σ‖ε_l‖², Σ_L = 1, MSE)."""
    net, x, y = grown_problem("linear")
    fixed = PredictiveCoding(inference_rate=0.5)
    cl.Simulator(net, fixed)
    start = relaxed_energy(fixed, net, x, y, 1)
    assert not relaxed_energy(fixed, net, x, y, 100) < 10 * start
    assert_descends(net, x, y)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_curvature_step_descends_on_grown_nonlinear_nets(activation):
    assert_descends(*grown_problem(activation))


def assert_descends(net, x, y) -> None:
    scaled = PredictiveCoding(inference_rate=0.9, curvature_step=True)
    cl.Simulator(net, scaled)
    energies = [relaxed_energy(scaled, net, x, y, n) for n in (1, 5, 20, 100)]
    assert all(b < a for a, b in zip(energies, energies[1:])), energies


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_curvature_step_converges_to_backprop_on_grown_weights(activation):
    """Whittington & Bogacz's limit still holds with the scaled steps: the scaling changes the path of the
    relaxation, not its equilibrium (the same update as many tiny fixed steps), which is backprop's."""
    net, x, y = grown_problem(activation, gain=2.0)
    rule = PredictiveCoding(n_inference=400, inference_rate=0.9, output_variance=100.0, curvature_step=True)
    estimate = cl.rules.rule_estimate(net, rule, x, y)
    tiny_steps = cl.rules.rule_estimate(net, PredictiveCoding(1000, 0.1, output_variance=100.0), x, y)
    for name in estimate:
        assert_close(estimate[name], tiny_steps[name], rtol=1e-6, atol=1e-9)
    assert cl.rules.rule_alignment(net, rule, x, y).cosine >= 0.99
    assert 0.97 < norm_ratio(estimate, cl.rules.exact_gradient(net, x, y)) < 1.03


def test_curvature_step_must_be_a_bool():
    with pytest.raises(TypeError, match="curvature_step"):
        PredictiveCoding(curvature_step="yes")
