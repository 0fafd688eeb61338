"""BPTT's gradient against central finite differences, in float64.

For every parameter entry θ_k, the reference is

    ∂L/∂θ_k ≈ (L(θ + ε e_k) − L(θ − ε e_k)) / 2ε,   ε = 1e-6,

whose truncation error is O(ε²) and rounding error O(1e-16/ε), both far
below the 1e-4 relative tolerance.  Spiking models use the ``"smooth"``
spike z = σ(slope·x) so that the forward dynamics are differentiable and
BPTT is exact rather than a surrogate.
"""
from __future__ import annotations

from typing import Callable

import pytest
import torch

import creditlab as cl

EPS = 1e-6
REL_TOL = 1e-4


def run_loss(model: cl.models.Model, x: torch.Tensor, target: torch.Tensor) -> float:
    with torch.no_grad():
        return float(cl.Simulator(model).run(x, target=target).loss)


def finite_difference_gradient(model: cl.models.Model, x: torch.Tensor,
                               target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Central differences of the run's loss for every entry of every parameter."""
    grads = {}
    for name, param in model.named_parameters():
        grad = torch.zeros_like(param)
        flat, flat_grad = param.data.view(-1), grad.view(-1)
        for k in range(flat.numel()):
            original = float(flat[k])
            flat[k] = original + EPS
            up = run_loss(model, x, target)
            flat[k] = original - EPS
            down = run_loss(model, x, target)
            flat[k] = original
            flat_grad[k] = (up - down) / (2 * EPS)
        grads[name] = grad
    return grads


def bptt_gradient(model: cl.models.Model, x: torch.Tensor, target: torch.Tensor,
                  rule: cl.rules.Rule) -> dict[str, torch.Tensor]:
    """What ``rule`` writes into ``p.grad`` through the simulator."""
    model.zero_grad(set_to_none=True)
    cl.Simulator(model, rule).run(x, target=target)
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def assert_gradients_close(estimate: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert estimate.keys() == reference.keys()
    for name, ref in reference.items():
        assert float(ref.norm()) > 1e-8, f"{name}: the loss does not depend on it, nothing is tested"
        rel = float((estimate[name] - ref).norm() / ref.norm())
        assert rel < REL_TOL, f"{name}: relative error {rel:.2e} against finite differences"


def rate_rnn() -> cl.models.RateRNN:
    return cl.models.RateRNN(3, 6, 2, tau=10e-3, dt=2e-3, g=1.2, seed=0)


def smooth_lif(**extra: object) -> cl.models.LIF:
    """Smooth-spike LIF with half the neurons adaptive, driven close to threshold."""
    return cl.models.LIF(3, 6, 2, adaptive_fraction=0.5, tau_a=30e-3, beta=0.5, tau_m=10e-3,
                         tau_out=10e-3, surrogate="smooth", slope=3.0, w_in_gain=3.0,
                         w_rec_gain=1.5, seed=1, **extra)


MODELS: dict[str, Callable[[], cl.models.Model]] = {
    "rate_rnn": rate_rnn,
    "smooth_alif": smooth_lif,
    "smooth_alif_delays": lambda: smooth_lif(delays=3),
}


@pytest.mark.parametrize("make_model", MODELS.values(), ids=MODELS.keys())
def test_bptt_equals_finite_differences(make_model: Callable[[], cl.models.Model], float64: torch.dtype) -> None:
    model = make_model()
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(25, 3, model.n_in, generator=gen)
    target = torch.randn(25, 3, model.n_out, generator=gen)

    reference = finite_difference_gradient(model, x, target)
    assert_gradients_close(bptt_gradient(model, x, target, cl.rules.BPTT()), reference)
    assert_gradients_close(cl.rules.exact_gradient(model, x, target), reference)


def test_surrogate_gradient_keeps_smooth_spike_and_is_exact(float64: torch.dtype) -> None:
    """SurrogateGradient() without a surrogate keeps the model's own (smooth) spike function."""
    model = smooth_lif()
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(20, 2, model.n_in, generator=gen)
    target = torch.randn(20, 2, model.n_out, generator=gen)
    reference = finite_difference_gradient(model, x, target)
    assert_gradients_close(bptt_gradient(model, x, target, cl.rules.SurrogateGradient()), reference)


def test_autapses_get_no_gradient(float64: torch.dtype) -> None:
    """W_rec's masked diagonal does not act, so its exact gradient is zero."""
    model = smooth_lif()
    x = torch.rand(10, 2, model.n_in, generator=torch.Generator().manual_seed(4))
    grad = cl.rules.exact_gradient(model, x, torch.zeros(10, 2, model.n_out))["w_rec"]
    assert float(grad.norm()) > 0
    assert torch.equal(grad.diagonal(), torch.zeros(model.n_rec))
