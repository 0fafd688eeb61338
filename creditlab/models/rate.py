"""Leaky rate RNN.

Continuous dynamics τ dh/dt = −h + W r + W_in u + b, r = φ(h), discretised
with forward Euler (Murray 2019, eLife 8:e43299):

    h^{t+1} = (1 − dt/τ) h^t + (dt/τ) (W r^t + W_in u^{t+1} + b)
    r^{t+1} = φ(h^{t+1})
    y^{t+1} = W_out r^{t+1} + b_out

with φ = tanh or relu.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .. import _checks
from .base import Model, init_normal

ACTIVATIONS = ("tanh", "relu")


class RateState(NamedTuple):
    h: torch.Tensor   # unit state [B, N]
    r: torch.Tensor   # rate φ(h) [B, N]


class RateLocals(NamedTuple):
    x: torch.Tensor        # input u^{t+1} [B, n_in]
    pre_rec: torch.Tensor  # presynaptic rates r^t [B, N]
    h: torch.Tensor        # new state h^{t+1}
    psi: torch.Tensor      # φ'(h^{t+1})
    r: torch.Tensor        # new rate r^{t+1}


class RateRNN(Model):
    """Leaky rate RNN with a linear readout (times in seconds)."""

    kind = "rate"

    def __init__(self, n_in: int, n_rec: int, n_out: int, tau: float = 30e-3, dt: float = 1e-3,
                 activation: str = "tanh", g: float = 1.5, bias: bool = True,
                 seed: int | None = None) -> None:
        super().__init__()
        self.n_in = _checks.positive_int("n_in", n_in)
        self.n_units = self.n_rec = _checks.positive_int("n_rec", n_rec)
        self.n_out = _checks.positive_int("n_out", n_out)
        self.tau = _checks.positive("tau", tau)
        self.dt = _checks.positive("dt", dt)
        if self.dt > self.tau:
            raise ValueError(f"dt must be <= tau for a stable Euler step, got dt={dt}, tau={tau}")
        self.activation = _checks.choice("activation", activation, ACTIVATIONS)
        self.leak = self.dt / self.tau
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.w_in = init_normal((n_rec, n_in), n_in)
            self.w_rec = init_normal((n_rec, n_rec), n_rec, _checks.non_negative("g", g))
            self.b = nn.Parameter(torch.zeros(n_rec)) if bias else None
            self.w_out = init_normal((n_out, n_rec), n_rec)
            self.b_out = nn.Parameter(torch.zeros(n_out))

    def phi(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(h) if self.activation == "tanh" else torch.relu(h)

    def phi_prime(self, h: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
        """φ′(h); ``r = φ(h)`` when already computed (tanh′ = 1 − r², without a second tanh)."""
        if self.activation == "tanh":
            return 1 - (torch.tanh(h) if r is None else r) ** 2
        return (h > 0).to(h.dtype)

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None, traces: bool = False) -> RateState:
        zeros = torch.zeros(batch_size, self.n_rec, device=device or self.device, dtype=dtype or self.dtype)
        return RateState(zeros, self.phi(zeros))

    def input_current(self, x: torch.Tensor) -> torch.Tensor:
        current = x @ self.w_in.t()
        return current + self.b if self.b is not None else current

    def step(self, x_t: torch.Tensor, state: RateState, i_in: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, RateState, RateLocals]:
        if i_in is None:
            i_in = self.input_current(x_t)
        drive = i_in + state.r @ self.w_rec.t()
        if noise is not None:
            drive = drive + noise
        h = (1 - self.leak) * state.h + self.leak * drive
        r = self.phi(h)
        y = r @ self.w_out.t() + self.b_out
        with torch.no_grad():
            psi = self.phi_prime(h.detach(), r.detach())
        return y, RateState(h, r), RateLocals(x_t, state.r, h, psi, r)
