"""Benchmark time series for reservoir computing.

- Mackey-Glass (Mackey & Glass 1977), the delay differential equation
      dx/dt = a x(t−τ) / (1 + x(t−τ)^n) − b x(t),   a = 0.2, b = 0.1, n = 10,
  chaotic for τ = 17; integrated with 4th-order Runge–Kutta at step h and
  sampled once per time unit (the series used by Jaeger 2001 and ReservoirPy).
- NARMA10 (Atiya & Parlos 2000):
      y(t+1) = 0.3 y(t) + 0.05 y(t) Σ_{i=0}^{9} y(t−i) + 1.5 u(t−9) u(t) + 0.1,
  u(t) ~ U[0, 0.5].
"""
from __future__ import annotations

import numpy as np
import torch

from .. import _checks


def mackey_glass(n_steps: int, tau: float = 17.0, a: float = 0.2, b: float = 0.1, n: int = 10,
                 x0: float = 1.2, h: float = 0.1, sample: float = 1.0, seed: int | None = None) -> torch.Tensor:
    """``n_steps`` samples of the Mackey-Glass series, one every ``sample`` time units.

    The history before t = 0 is the constant ``x0`` (plus a small seeded jitter
    when ``seed`` is given, to draw different trajectories).
    """
    _checks.positive_int("n_steps", n_steps)
    _checks.positive("tau", tau)
    _checks.positive("h", h)
    _checks.positive("sample", sample)
    per_sample = int(round(sample / h))
    if abs(per_sample * h - sample) > 1e-9:
        raise ValueError(f"sample must be a multiple of h, got sample={sample}, h={h}")
    lag = int(round(tau / h))
    history = np.full(lag + 1, x0, dtype=np.float64)
    if seed is not None:
        history += 0.01 * np.random.default_rng(seed).standard_normal(lag + 1)
    total = n_steps * per_sample
    x = np.empty(lag + 1 + total, dtype=np.float64)
    x[: lag + 1] = history

    def f(x_now: float, x_lag: float) -> float:
        return a * x_lag / (1.0 + x_lag ** n) - b * x_now

    for i in range(lag, lag + total):
        # The delayed term at half steps is the mean of its neighbours on the grid.
        lag_now, lag_next = x[i - lag], x[i - lag + 1]
        lag_half = 0.5 * (lag_now + lag_next)
        k1 = f(x[i], lag_now)
        k2 = f(x[i] + 0.5 * h * k1, lag_half)
        k3 = f(x[i] + 0.5 * h * k2, lag_half)
        k4 = f(x[i] + h * k3, lag_next)
        x[i + 1] = x[i] + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return torch.from_numpy(x[lag + per_sample:: per_sample][:n_steps].copy())


def narma10(n_steps: int, seed: int = 0, batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ``u [T, B, 1]`` ~ U[0, 0.5] and NARMA10 target ``y [T, B, 1]``."""
    _checks.positive_int("n_steps", n_steps)
    _checks.positive_int("batch_size", batch_size)
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.0, 0.5, size=(n_steps, batch_size))
    y = np.zeros((n_steps, batch_size))
    for t in range(9, n_steps - 1):
        y[t + 1] = (0.3 * y[t] + 0.05 * y[t] * y[t - 9: t + 1].sum(0)
                    + 1.5 * u[t - 9] * u[t] + 0.1)
    return torch.from_numpy(u)[..., None], torch.from_numpy(y)[..., None]


def nrmse(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Root mean squared error divided by the target's standard deviation."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction and target must have the same shape, got "
                         f"{tuple(prediction.shape)} and {tuple(target.shape)}")
    return float(((prediction - target) ** 2).mean().sqrt() / target.std())
