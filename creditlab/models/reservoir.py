"""Echo-state network (Jaeger 2001; Lukoševičius 2012, "A practical guide").

Leaky tanh reservoir with a linear readout on ``[1; u; h]``:

    h^{t+1} = (1 − λ) h^t + λ tanh(W_in [1; u^{t+1}] + W h^t + W_fb y^t)
    y^{t+1} = W_out [1; u^{t+1}; h^{t+1}]

W is sparse (each entry non-zero with probability ``density``, N(0, 1)) and
rescaled to the requested spectral radius ρ(W); W_in ~ U[−s, s] (input
scaling s, bias scaling for the first column); W_fb ~ U[−f, f] when output
feedback is on.  The readout is fit in closed form by ridge regression

    W_out = Y Xᵀ (X Xᵀ + β I)⁻¹      (X: collected [1; u; h] after the washout)

or online by recursive least squares (FORCE, Sussillo & Abbott 2009):

    P ← P − P x xᵀ P / (1 + xᵀ P x),   W_out ← W_out − (e) (P x)ᵀ,  e = W_out x − y*.

The reservoir is batched over independent trials ([T, B, n_in] inputs).
On the CPU, ``states`` of a sparse reservoir (and so ``fit``, and ``run``
without feedback) runs in a compiled loop over W's non-zero entries
(:mod:`creditlab.native`); it equals the PyTorch loop to rounding.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .. import _checks, native
from .base import Model

#: largest fraction of non-zero recurrent weights for which the compiled sparse loop
#: (creditlab.native) collects states faster than a dense product per step
COMPILED_DENSITY = 0.25


class EchoStateState(NamedTuple):
    h: torch.Tensor  # reservoir state [B, N]
    y: torch.Tensor  # last output [B, n_out] (fed back when feedback is on)


class EchoStateLocals(NamedTuple):
    x: torch.Tensor
    pre_rec: torch.Tensor
    h: torch.Tensor


class EchoState(Model):
    """Leaky echo-state reservoir with a ridge (or RLS) readout."""

    kind = "reservoir"

    def __init__(self, n_in: int, n_res: int, n_out: int = 1, spectral_radius: float = 0.9,
                 leak: float = 1.0, input_scaling: float = 1.0, bias_scaling: float = 0.0,
                 density: float = 0.1, feedback: bool = False, feedback_scaling: float = 1.0,
                 dt: float = 1.0, seed: int | None = None) -> None:
        super().__init__()
        self.n_in = _checks.positive_int("n_in", n_in)
        self.n_units = self.n_res = _checks.positive_int("n_res", n_res)
        self.n_out = _checks.positive_int("n_out", n_out)
        self.spectral_radius = _checks.positive("spectral_radius", spectral_radius)
        self.leak = _checks.in_range("leak", leak, 0.0, 1.0)
        if self.leak == 0.0:
            raise ValueError("leak must be in (0, 1]; leak = 0 freezes the reservoir")
        self.density = _checks.in_range("density", density, 0.0, 1.0)
        self.dt = _checks.positive("dt", dt)
        self.feedback = bool(feedback)
        gen = torch.Generator().manual_seed(seed if seed is not None else int(torch.seed() % 2**31))
        self.w = nn.Parameter(self._sparse_recurrent(gen), requires_grad=False)
        w_in = (torch.rand(n_res, n_in + 1, generator=gen) * 2 - 1)
        w_in[:, 0] *= _checks.non_negative("bias_scaling", bias_scaling)
        w_in[:, 1:] *= _checks.non_negative("input_scaling", input_scaling)
        self.w_in = nn.Parameter(w_in, requires_grad=False)
        fb = (torch.rand(n_res, n_out, generator=gen) * 2 - 1) * _checks.non_negative("feedback_scaling", feedback_scaling)
        self.w_fb = nn.Parameter(fb, requires_grad=False) if self.feedback else None
        self.w_out = nn.Parameter(torch.zeros(n_out, 1 + n_in + n_res))

    def _sparse_recurrent(self, gen: torch.Generator) -> torch.Tensor:
        n = self.n_res
        mask = torch.rand(n, n, generator=gen) < self.density
        if not bool(mask.any()):
            raise ValueError(f"density={self.density} leaves the {n}-unit reservoir with no connections; "
                             "raise density or n_res")
        w = torch.randn(n, n, generator=gen, dtype=torch.float64) * mask
        radius = torch.linalg.eigvals(w).abs().max()
        if radius == 0:
            raise ValueError("the drawn recurrent matrix is nilpotent (spectral radius 0); raise density")
        return (w * (self.spectral_radius / radius)).float()

    # -- engine protocol ---------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None, traces: bool = False) -> EchoStateState:
        device, dtype = device or self.device, dtype or self.dtype
        return EchoStateState(torch.zeros(batch_size, self.n_res, device=device, dtype=dtype),
                              torch.zeros(batch_size, self.n_out, device=device, dtype=dtype))

    def input_current(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w_in[:, 1:].t() + self.w_in[:, 0]

    def readout(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return h @ self.w_out[:, 1 + self.n_in:].t() + x_t @ self.w_out[:, 1: 1 + self.n_in].t() + self.w_out[:, 0]

    def step(self, x_t: torch.Tensor, state: EchoStateState, i_in: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, EchoStateState, EchoStateLocals]:
        if i_in is None:
            i_in = self.input_current(x_t)
        drive = i_in + state.h @ self.w.t()
        if self.w_fb is not None:
            drive = drive + state.y @ self.w_fb.t()
        if noise is not None:
            drive = drive + noise
        h = (1 - self.leak) * state.h + self.leak * torch.tanh(drive)
        y = self.readout(x_t, h)
        return y, EchoStateState(h, y), EchoStateLocals(x_t, state.h, h)

    # -- reservoir computing ------------------------------------------------------
    @torch.no_grad()
    def states(self, x: torch.Tensor, teacher: torch.Tensor | None = None,
               state: EchoStateState | None = None) -> tuple[torch.Tensor, EchoStateState]:
        """Reservoir states ``[T, B, N]`` driven by ``x`` (and ``teacher`` outputs fed back)."""
        self.check_input(x)
        if self.feedback and teacher is None:
            raise ValueError("teacher must be given to collect states of a reservoir with output feedback")
        state = state or self.init_state(x.shape[1], x.device, x.dtype)
        currents = self.input_current(x)
        if self.w_fb is not None:
            previous = torch.cat([state.y[None], teacher[:-1]])
            currents = currents + previous @ self.w_fb.t()
        h, w = state.h, self.w.detach()
        if (w.dtype == x.dtype and native.supports(currents, w)
                and torch.count_nonzero(w) <= COMPILED_DENSITY * w.numel()):
            out = native.esn_states(currents.contiguous(), w, self.leak, h.contiguous())
            h = out[-1]
        else:
            out = torch.empty(x.shape[0], x.shape[1], self.n_res, dtype=x.dtype, device=x.device)
            for t, current in enumerate(currents.unbind(0)):
                h = (1 - self.leak) * h + self.leak * torch.tanh(torch.addmm(current, h, w.t()))
                out[t] = h
        last_y = teacher[-1] if teacher is not None else self.readout(x[-1], h)
        return out, EchoStateState(h, last_y)

    def _design(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(*h.shape[:-1], 1, dtype=h.dtype, device=h.device)
        return torch.cat([ones, x, h], dim=-1)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor, washout: int = 0, ridge: float = 1e-8) -> "EchoState":
        """Ridge-regression readout from inputs ``x [T, B, n_in]`` to targets ``y [T, B, n_out]``."""
        self.check_input(x)
        h, _ = self.states(x, teacher=y if self.feedback else None)
        return self.fit_states(x, h, y, washout, ridge)

    @torch.no_grad()
    def fit_states(self, x: torch.Tensor, h: torch.Tensor, y: torch.Tensor, washout: int = 0,
                   ridge: float = 1e-8) -> "EchoState":
        """Ridge readout from already collected states ``h = states(x)[0]`` (no second pass)."""
        _checks.tensor("y", y, rank=3, shape=(x.shape[0], x.shape[1], self.n_out))
        _checks.tensor("h", h, rank=3, shape=(x.shape[0], x.shape[1], self.n_res))
        _checks.non_negative("ridge", ridge)
        if isinstance(washout, bool) or not isinstance(washout, int) or not 0 <= washout < x.shape[0]:
            raise ValueError(f"washout must be an int in [0, {x.shape[0] - 1}] (steps), got {washout!r}")
        design = self._design(x, h)[washout:].reshape(-1, 1 + self.n_in + self.n_res).double()
        target = y[washout:].reshape(-1, self.n_out).double()
        gram = gram_matrix(design)
        gram.diagonal().add_(ridge)
        w_out = torch.linalg.solve(gram, design.t() @ target).t()
        self.w_out.copy_(w_out.to(self.w_out.dtype))
        return self

    @torch.no_grad()
    def run(self, x: torch.Tensor, state: EchoStateState | None = None) -> tuple[torch.Tensor, EchoStateState]:
        """Outputs ``[T, B, n_out]`` for inputs ``x`` (feedback uses the reservoir's own outputs)."""
        self.check_input(x)
        if self.w_fb is None:
            h, last = self.states(x, state=state)
            return self._design(x, h) @ self.w_out.t(), last
        state = state or self.init_state(x.shape[1], x.device, x.dtype)
        outputs = []
        for x_t in x.unbind(0):
            y, state, _ = self.step(x_t, state)
            outputs.append(y)
        return torch.stack(outputs), state

    @torch.no_grad()
    def generate(self, n_steps: int, state: EchoStateState, x_last: torch.Tensor) -> torch.Tensor:
        """Free-running prediction of the next ``n_steps`` values (``[n_steps, B, n_out]``).

        ``state`` is the reservoir state after the last teacher input ``x_last``;
        the first value is the readout there, and each value is fed back as the
        next input (``n_in == n_out``).
        """
        _checks.positive_int("n_steps", n_steps)
        if self.n_in != self.n_out:
            raise ValueError(f"generate needs n_in == n_out to feed outputs back as inputs, "
                             f"got n_in={self.n_in}, n_out={self.n_out}")
        u = self.readout(x_last, state.h)
        outputs = [u]
        for _ in range(n_steps - 1):
            u, state, _ = self.step(u, state)
            outputs.append(u)
        return torch.stack(outputs)

    @torch.no_grad()
    def fit_online(self, x: torch.Tensor, y: torch.Tensor, washout: int = 0,
                   alpha: float = 1.0) -> "EchoState":
        """Recursive least squares (FORCE) readout, one step at a time; ``P₀ = I/alpha``.

        With ``alpha`` → 0 RLS converges to the unregularised least-squares solution.
        """
        self.check_input(x)
        _checks.tensor("y", y, rank=3, shape=(x.shape[0], x.shape[1], self.n_out))
        _checks.positive("alpha", alpha)
        h, _ = self.states(x, teacher=y if self.feedback else None)
        design = self._design(x, h)[washout:].double()
        target = y[washout:].double()
        dim = design.shape[-1]
        p = torch.eye(dim, dtype=torch.float64, device=x.device) / alpha
        w = self.w_out.detach().double().clone()
        for xt_batch, yt_batch in zip(design.unbind(0), target.unbind(0)):
            for xt, yt in zip(xt_batch, yt_batch):
                px = p @ xt
                gain = px / (1.0 + xt @ px)
                err = w @ xt - yt
                w -= err[:, None] * gain[None, :]
                p -= gain[:, None] @ px[None, :]
        self.w_out.copy_(w.to(self.w_out.dtype))
        return self


def gram_matrix(design: torch.Tensor) -> torch.Tensor:
    """Dᵀ D for a design matrix ``[M, K]``.

    On the CPU in float64 it goes through NumPy, whose ``D.T @ D`` recognises
    the product of a matrix with its own transpose and calls BLAS ``syrk``
    (half the multiply-adds of a general product: ~37 ms instead of ~73 ms
    for the [3 900, 502] design of the Mackey-Glass benchmark, one thread);
    elsewhere it is a plain product.
    """
    if design.device.type != "cpu" or design.dtype != torch.float64:
        return design.t() @ design
    d = design.contiguous().numpy()
    return torch.from_numpy(d.T @ d)
