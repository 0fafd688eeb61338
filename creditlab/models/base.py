"""The model protocol shared by every network the engine can step.

A model is a thin ``nn.Module`` around a pure step function (Norse-style):

- ``init_state(batch_size, device, dtype, traces)`` → a typed state tuple;
- ``input_current(x)`` → the feed-forward drive for any number of steps at
  once (one matmul over ``[T, B, n_in]`` instead of T small ones);
- ``step(x_t, state, i_in=None, noise=None)`` → ``(output, state, locals)``;
- optionally ``run_fused(x, state, monitors)`` → ``(outputs, state, record)``:
  the same run as stepping, fused over time (or compiled), when
  ``fused_available(traces, grad, monitors)`` says so; ``record`` maps each
  monitor's name to what stepping would have recorded.

No state lives on the module between runs.  ``locals`` are the quantities a
local learning rule may read; ``noise`` is an additive perturbation of the
units' input current, which perturbation rules inject without the model
knowing which rule is attached.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

import torch
from torch import nn

from .. import _checks

if TYPE_CHECKING:
    from ..simulator.monitors import Monitor


class Model(nn.Module):
    """Base class: sizes, clock and the input checks every model shares."""

    #: "spiking", "rate" or "feedforward" — rules check it at ``attach``.
    kind: str = ""
    n_in: int
    n_out: int
    n_units: int
    dt: float

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None, traces: bool = False) -> NamedTuple:
        raise NotImplementedError

    def input_current(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step(self, x_t: torch.Tensor, state: Any, i_in: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, Any, NamedTuple]:
        raise NotImplementedError

    def fused_available(self, traces: bool, grad: bool = True, monitors: tuple[Monitor, ...] = ()) -> bool:
        """Whether :meth:`run_fused` can run this configuration.

        ``traces``: a rule wants local traces; ``grad``: the run records an
        autograd graph; ``monitors``: what the run must record.
        """
        return False

    def run_fused(self, x: torch.Tensor, state: Any,
                  monitors: tuple[Monitor, ...] = ()) -> tuple[torch.Tensor, Any, dict[str, torch.Tensor]]:
        """Run all of ``x [T, B, n_in]`` at once; equal to stepping, for models that have a fused path.

        Returns the outputs ``[T, B, n_out]``, the final state and the
        monitors' records (name → ``[T, …]`` tensor).
        """
        raise NotImplementedError(f"{type(self).__name__} has no fused multi-step path")

    def check_input(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Validate a ``[T, B, n_in]`` input sequence."""
        _checks.tensor(name, x, rank=3, shape=(None, None, self.n_in))
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"{name} must have at least one time step and one batch entry, got shape {tuple(x.shape)}")
        return x

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the whole sequence ``x [T, B, n_in]`` and return outputs ``[T, B, n_out]``."""
        self.check_input(x)
        state = self.init_state(x.shape[1], x.device, x.dtype)
        if self.fused_available(traces=False, grad=torch.is_grad_enabled()):
            return self.run_fused(x, state)[0]
        outputs = []
        for x_t, i_t in zip(x.unbind(0), self.input_current(x).unbind(0)):
            out, state, _ = self.step(x_t, state, i_t)
            outputs.append(out)
        return torch.stack(outputs)


def init_normal(shape: tuple[int, ...], fan_in: int, gain: float = 1.0) -> nn.Parameter:
    """A weight drawn from N(0, gain² / fan_in)."""
    return nn.Parameter(torch.randn(*shape) * (gain / max(fan_in, 1) ** 0.5))


#: steps whose feed-forward drive is computed in one matmul; bounds the O(T)
#: memory of precomputed input currents so online rules stay flat in T
DRIVE_CHUNK = 256


def drive(model: Model, x: torch.Tensor,
          chunk: int = DRIVE_CHUNK) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x_t, input_current_t)``, projecting the input ``chunk`` steps at a time."""
    for part in x.split(chunk):
        yield from zip(part.unbind(0), model.input_current(part).unbind(0))
