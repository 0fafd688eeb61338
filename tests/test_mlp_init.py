"""MLP(init=...): Xavier-uniform statistics (Glorot & Bengio 2010) and the unchanged default."""
import math

import pytest
import torch
from scipy import stats
from torch import nn

import creditlab as cl


def test_xavier_weights_are_uniform_with_glorot_bound_and_biases_are_zero():
    net = cl.models.MLP([784, 256, 256, 10], init="xavier", seed=0)
    for layer in net.layers:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = layer.weight.detach().double().flatten()
        assert w.abs().max() <= bound
        # Kolmogorov-Smirnov against U(−a, a): an independent check of the whole distribution
        assert stats.kstest(w.numpy(), "uniform", args=(-bound, 2 * bound)).pvalue > 1e-3
        # variance 2 / (fan_in + fan_out), within 4 standard errors of the sample variance
        expected = 2.0 / (fan_in + fan_out)
        standard_error = expected * math.sqrt(0.8 / w.numel())   # Var(U²) = 4a⁴/45, a² = 3·expected
        assert abs(float(w.var()) - expected) < 4 * standard_error
        assert abs(float(w.mean())) < 4 * math.sqrt(expected / w.numel())
        assert torch.equal(layer.bias.detach(), torch.zeros_like(layer.bias))


def test_xavier_matches_torch_xavier_uniform_draw_for_draw():
    net = cl.models.MLP([20, 30, 5], init="xavier", seed=3)
    torch.manual_seed(3)
    layers = [nn.Linear(20, 30), nn.Linear(30, 5)]
    for layer in layers:
        nn.init.xavier_uniform_(layer.weight)
    for ours, theirs in zip(net.layers, layers):
        assert torch.equal(ours.weight.detach(), theirs.weight.detach())


def test_default_init_is_still_nn_linear():
    net = cl.models.MLP([20, 30, 5], seed=7)
    torch.manual_seed(7)
    reference = [nn.Linear(20, 30), nn.Linear(30, 5)]
    for ours, theirs in zip(net.layers, reference):
        assert torch.equal(ours.weight.detach(), theirs.weight.detach())
        assert torch.equal(ours.bias.detach(), theirs.bias.detach())
    assert net.init == "default"


def test_xavier_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = cl.models.MLP([10, 8, 4], init="xavier", seed=1)
    after = torch.rand(3)
    b = cl.models.MLP([10, 8, 4], init="xavier", seed=1)
    assert torch.equal(before, after)
    assert all(torch.equal(x.weight, y.weight) for x, y in zip(a.layers, b.layers))


@pytest.mark.parametrize("bad", ["glorot", "Xavier", None, 1])
def test_unknown_init_is_refused_naming_the_argument(bad):
    with pytest.raises(ValueError, match="init must be one of 'default', 'xavier'"):
        cl.models.MLP([4, 3, 2], init=bad)
