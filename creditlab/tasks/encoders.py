"""Spike encoders: turn intensities or rates into spike trains ``[T, *shape]``.

Rate (Poisson) code — each element spikes independently at each step with
probability p:

    z_t ~ Bernoulli(p),   p = value          (probability form, value ∈ [0, 1])
                          p = rate · dt      (rate form: ``dt`` given, rate in Hz)

This is the Bernoulli approximation of a Poisson process that
``snntorch.spikegen.rate`` draws too, but from an explicit
``torch.Generator`` instead of torch's global one, so a task's batches are
reproducible and resumable from the task's own generator state.  With a
generator seeded s, the spikes equal snntorch's after ``torch.manual_seed(s)``.

Latency code — an intensity X ∈ [0, 1] is a constant current charging an RC
membrane, V(t) = X (1 − e^{−t/τ}); the unit fires once, when V reaches the
threshold θ:

    t_spike = τ · ln(X / (X − θ))     for X > θ   (log code)
    t_spike = τ · (1 − X)             for X ≥ θ   (linear code)

t_spike (in steps) is rounded to the nearest step; an element that never
reaches θ, or whose spike falls after the last step, stays silent.  These are
the spike times of ``snntorch.spikegen.latency(..., clip=True)`` without its
normalisation.
"""
from __future__ import annotations

import math

import torch

from .. import _checks


def _check_generator(generator: torch.Generator | None) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _float_tensor(name: str, value: torch.Tensor) -> torch.Tensor:
    _checks.tensor(name, value)
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def _check_unit_interval(name: str, value: torch.Tensor) -> None:
    if value.numel() and (bool((value < 0).any()) or bool((value > 1).any())):
        raise ValueError(f"{name} must lie in [0, 1], got values in "
                         f"[{float(value.min())}, {float(value.max())}]")


def spike_probabilities(values: torch.Tensor, dt: float | None = None) -> torch.Tensor:
    """Per-step spike probability: ``values`` itself (dt None) or ``values · dt`` (rates in Hz)."""
    _float_tensor("values", values)
    if dt is None:
        _check_unit_interval("values (spike probabilities per step; pass dt for rates in Hz)", values)
        return values
    dt = _checks.positive("dt", dt)
    if values.numel() and bool((values < 0).any()):
        raise ValueError(f"rates must be >= 0 Hz, got a minimum of {float(values.min())}")
    p = values * dt
    if p.numel() and bool((p > 1).any()):
        raise ValueError(f"rates · dt must be <= 1 (at most one spike per step); got a maximum rate "
                         f"of {float(values.max())} Hz with dt={dt} s")
    return p


def poisson(values: torch.Tensor, n_steps: int | None = None, dt: float | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Bernoulli spike trains with per-step probabilities from ``values``.

    ``values`` are probabilities in [0, 1], or rates in Hz when ``dt`` (s) is given.
    With ``n_steps`` the values are constant in time and the result is
    ``[n_steps, *values.shape]``; without it ``values`` is already time-varying
    ``[T, ...]`` and the result has its shape.  ``generator`` (on the values'
    device) makes the draw reproducible; None uses torch's global generator.
    """
    p = spike_probabilities(values, dt)
    _check_generator(generator)
    if n_steps is not None:
        _checks.positive_int("n_steps", n_steps)
        p = p.unsqueeze(0).expand(n_steps, *p.shape)
    # a contiguous probability tensor is what snntorch draws from, so both consume the
    # generator in the same order
    return torch.bernoulli(p.contiguous(), generator=generator)


def spike_raster(spike_times: torch.Tensor, n_steps: int) -> torch.Tensor:
    """One spike per element at step ``round(spike_times)``: ``[n_steps, *spike_times.shape]``.

    Elements whose rounded time is not in 0..n_steps−1 (or is NaN/inf) stay silent.
    """
    _checks.tensor("spike_times", spike_times, finite=False)
    _checks.positive_int("n_steps", n_steps)
    steps = torch.round(spike_times)
    fires = torch.isfinite(steps) & (steps >= 0) & (steps <= n_steps - 1)
    index = torch.where(fires, steps, torch.zeros_like(steps)).long().unsqueeze(0)
    raster = torch.zeros((n_steps, *spike_times.shape), dtype=spike_times.dtype, device=spike_times.device)
    return raster.scatter_(0, index, fires.unsqueeze(0).to(spike_times.dtype))


def latency_times(intensities: torch.Tensor, tau: float = 1.0, threshold: float = 0.01,
                  linear: bool = False) -> torch.Tensor:
    """Spike time in steps of each intensity in [0, 1]; inf where it never fires."""
    _float_tensor("intensities", intensities)
    _check_unit_interval("intensities", intensities)
    tau = _checks.positive("tau", tau)
    threshold = _checks.in_range("threshold", threshold, 0.0, 1.0)
    if threshold in (0.0, 1.0):
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
    if not isinstance(linear, bool):
        raise TypeError(f"linear must be a bool, got {type(linear).__name__}")
    if linear:
        fires = intensities >= threshold
        times = tau * (1.0 - intensities)
    else:
        fires = intensities > threshold
        # the ratio is only formed where X > θ, so it is finite and > 1
        safe = torch.where(fires, intensities, torch.ones_like(intensities))
        times = tau * torch.log(safe / (safe - threshold))
    return torch.where(fires, times, torch.full_like(times, math.inf))


def latency(intensities: torch.Tensor, n_steps: int, tau: float = 1.0, threshold: float = 0.01,
            linear: bool = False) -> torch.Tensor:
    """At most one spike per element, earlier for stronger inputs: ``[n_steps, *shape]``.

    ``tau`` is the membrane time constant in steps; ``threshold`` ∈ (0, 1).
    """
    _checks.positive_int("n_steps", n_steps)
    return spike_raster(latency_times(intensities, tau, threshold, linear), n_steps)
