"""Spike encoders: exact agreement with snntorch.spikegen, statistics, validation."""
from __future__ import annotations

import math

import pytest
import torch
from snntorch import spikegen

from creditlab.tasks import encoders


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- poisson

@pytest.mark.parametrize("seed", [0, 7])
def test_poisson_equals_snntorch_rate_under_the_same_seed(seed: int) -> None:
    p = torch.rand(5, 13, generator=_gen(100 + seed))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        expected = spikegen.rate(p, num_steps=30)
    assert torch.equal(encoders.poisson(p, n_steps=30, generator=_gen(seed)), expected)


def test_time_varying_poisson_equals_snntorch_time_var_input() -> None:
    p = torch.rand(20, 4, 6, generator=_gen(3))
    with torch.random.fork_rng():
        torch.manual_seed(11)
        expected = spikegen.rate(p, time_var_input=True)
    got = encoders.poisson(p, generator=_gen(11))
    assert got.shape == (20, 4, 6)
    assert torch.equal(got, expected)


def test_poisson_rate_form_fires_at_rate_times_dt() -> None:
    rates = torch.tensor([[0.0, 10.0, 40.0, 200.0]])
    n_steps = 20_000
    z = encoders.poisson(rates, n_steps=n_steps, dt=1e-3, generator=_gen(0))
    assert z.shape == (n_steps, 1, 4)
    assert set(z.unique().tolist()) <= {0.0, 1.0}
    p = rates[0] * 1e-3
    observed = z.mean((0, 1))
    sigma = torch.sqrt(p * (1 - p) / n_steps)
    assert torch.all((observed - p).abs() <= 5 * sigma + 1e-12), (observed, p)
    assert observed[0] == 0


def test_poisson_is_seeded_by_its_generator() -> None:
    p = torch.full((8, 10), 0.3)
    a = encoders.poisson(p, n_steps=50, generator=_gen(1))
    b = encoders.poisson(p, n_steps=50, generator=_gen(1))
    c = encoders.poisson(p, n_steps=50, generator=_gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("call, error, match", [
    (lambda: encoders.poisson(torch.tensor([1.5]), n_steps=3), ValueError, r"\[0, 1\]"),
    (lambda: encoders.poisson(torch.tensor([-0.1]), n_steps=3), ValueError, r"\[0, 1\]"),
    (lambda: encoders.poisson(torch.tensor([2000.0]), n_steps=3, dt=1e-3), ValueError, "rates · dt"),
    (lambda: encoders.poisson(torch.tensor([-1.0]), n_steps=3, dt=1e-3), ValueError, "rates must be >= 0"),
    (lambda: encoders.poisson(torch.tensor([1, 0]), n_steps=3), TypeError, "floating-point"),
    (lambda: encoders.poisson([0.5], n_steps=3), TypeError, "torch.Tensor"),
    (lambda: encoders.poisson(torch.tensor([0.5]), n_steps=0), ValueError, "n_steps"),
    (lambda: encoders.poisson(torch.tensor([0.5]), n_steps=3, dt=0.0), ValueError, "dt"),
    (lambda: encoders.poisson(torch.tensor([0.5]), n_steps=3, generator=3), TypeError, "generator"),
    (lambda: encoders.poisson(torch.tensor([math.nan]), n_steps=3), ValueError, "NaN"),
])
def test_poisson_rejects_bad_arguments(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------- latency

@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("tau, threshold", [(5.0, 0.01), (20.0, 0.2)])
def test_latency_equals_snntorch_latency(linear: bool, tau: float, threshold: float) -> None:
    x = torch.rand(16, 30, generator=_gen(4))
    x[0, :5] = torch.tensor([0.0, threshold, 1.0, threshold / 2, 0.5])
    expected = spikegen.latency(x, num_steps=40, tau=tau, threshold=threshold, linear=linear,
                                clip=True, bypass=True)
    got = encoders.latency(x, n_steps=40, tau=tau, threshold=threshold, linear=linear)
    assert got.shape == (40, 16, 30)
    assert torch.equal(got, expected)


def test_latency_spike_time_is_the_rc_threshold_crossing() -> None:
    # V(t) = X (1 − e^{−t/τ}) reaches θ exactly at the encoded (unrounded) time
    x = torch.linspace(0.05, 1.0, 50)
    tau, threshold = 8.0, 0.04
    t = encoders.latency_times(x, tau=tau, threshold=threshold)
    v = x * (1 - torch.exp(-t / tau))
    assert torch.allclose(v, torch.full_like(v, threshold), atol=1e-6)
    assert torch.all(t[1:] <= t[:-1])          # stronger input, earlier spike


def test_latency_fires_at_most_once_and_never_below_threshold() -> None:
    x = torch.rand(64, 20, generator=_gen(5))
    z = encoders.latency(x, n_steps=100, tau=10.0, threshold=0.1)
    counts = z.sum(0)
    assert torch.all(counts <= 1)
    assert torch.all(counts[x <= 0.1] == 0)
    times = encoders.latency_times(x, tau=10.0, threshold=0.1)
    expected = (x > 0.1) & (torch.round(times) <= 99)
    assert torch.equal(counts.bool(), expected)
    first = z.argmax(0)
    assert torch.equal(first[expected], torch.round(times[expected]).long())


def test_spike_raster_drops_times_outside_the_window() -> None:
    times = torch.tensor([0.0, 2.4, 2.6, 4.0, 4.6, -0.7, math.nan, math.inf])
    z = encoders.spike_raster(times, n_steps=5)
    assert z.shape == (5, 8)
    assert z.sum(0).tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert z.argmax(0)[:4].tolist() == [0, 2, 3, 4]


@pytest.mark.parametrize("call, error, match", [
    (lambda: encoders.latency(torch.tensor([1.2]), n_steps=5), ValueError, r"\[0, 1\]"),
    (lambda: encoders.latency(torch.tensor([0.5]), n_steps=5, tau=0.0), ValueError, "tau"),
    (lambda: encoders.latency(torch.tensor([0.5]), n_steps=5, threshold=1.0), ValueError, "threshold"),
    (lambda: encoders.latency(torch.tensor([0.5]), n_steps=5, threshold=0.0), ValueError, "threshold"),
    (lambda: encoders.latency(torch.tensor([0.5]), n_steps=5, linear="yes"), TypeError, "linear"),
    (lambda: encoders.latency(torch.tensor([0.5]), n_steps=-1), ValueError, "n_steps"),
    (lambda: encoders.spike_raster(torch.tensor([0.5]), n_steps=1.5), TypeError, "n_steps"),
])
def test_latency_rejects_bad_arguments(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
