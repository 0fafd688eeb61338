"""A small convolutional net, run by the engine for a single step (T = 1).

    c_1 = K_1 ∗ x + b_1,       p_1 = maxpool₂(relu(c_1))
    c_2 = K_2 ∗ p_1 + b_2,     p_2 = maxpool₂(relu(c_2))
    y   = W vec(p_2) + b

(LeCun et al. 1998's conv–pool pattern, with ReLU units; "same" padding so
each pooling halves the image.)  The input arrives flattened, ``[B, C·H·W]``,
like every other model's ``[B, n_in]``; ``forward`` also takes ``[B, C, H, W]``.
Only rules that differentiate through the graph (``BPTT``) train it; the
single-step local rules are written for ``MLP`` and refuse it at ``attach``.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import _checks
from .base import Model


class ConvNetLocals(NamedTuple):
    activities: tuple[torch.Tensor, ...]       # x, p_1, p_2 (images [B, C, H, W])
    preactivations: tuple[torch.Tensor, ...]   # c_1, c_2, y


class ConvNetState(NamedTuple):
    """A feed-forward net has no state between steps."""


class ConvNet(Model):
    """conv–relu–pool ×2 + linear readout on images of shape ``in_shape = (C, H, W)``."""

    kind = "feedforward"

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), channels: Sequence[int] = (16, 32),
                 n_out: int = 10, kernel_size: int = 5, dt: float = 1e-3, seed: int | None = None) -> None:
        super().__init__()
        if isinstance(in_shape, (str, bytes)) or len(in_shape) != 3:
            raise ValueError(f"in_shape must be (channels, height, width), got {in_shape!r}")
        self.in_shape = tuple(_checks.positive_int(f"in_shape[{i}]", s) for i, s in enumerate(in_shape))
        if min(self.in_shape[1:]) < 4:
            raise ValueError(f"in_shape height and width must be >= 4 (two 2×2 poolings), got {self.in_shape}")
        if isinstance(channels, (str, bytes)) or len(channels) != 2:
            raise ValueError(f"channels must list the two conv layers' channel counts, got {channels!r}")
        self.channels = tuple(_checks.positive_int(f"channels[{i}]", c) for i, c in enumerate(channels))
        self.kernel_size = _checks.positive_int("kernel_size", kernel_size)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (for 'same' padding), got {kernel_size}")
        self.n_in = self.in_shape[0] * self.in_shape[1] * self.in_shape[2]
        self.n_out = _checks.positive_int("n_out", n_out)
        self.dt = _checks.positive("dt", dt)
        height, width = self.in_shape[1], self.in_shape[2]
        self.n_units = (self.channels[0] * height * width + self.channels[1] * (height // 2) * (width // 2)
                        + self.n_out)
        pad = self.kernel_size // 2
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.conv1 = nn.Conv2d(self.in_shape[0], self.channels[0], self.kernel_size, padding=pad)
            self.conv2 = nn.Conv2d(self.channels[0], self.channels[1], self.kernel_size, padding=pad)
            self.readout = nn.Linear(self.channels[1] * (height // 4) * (width // 4), self.n_out)

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None, traces: bool = False) -> ConvNetState:
        return ConvNetState()

    def input_current(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def step(self, x_t: torch.Tensor, state: ConvNetState, i_in: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, ConvNetState, ConvNetLocals]:
        if noise is not None:
            raise ValueError("ConvNet takes no noise; perturbation rules train cl.models.MLP")
        image = x_t.reshape(x_t.shape[0], *self.in_shape)
        c1 = self.conv1(image)
        p1 = F.max_pool2d(torch.relu(c1), 2)
        c2 = self.conv2(p1)
        p2 = F.max_pool2d(torch.relu(c2), 2)
        y = self.readout(p2.flatten(1))
        return y, state, ConvNetLocals((image, p1, p2), (c1, c2, y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` or ``[B, n_in]`` → ``[B, n_out]``; ``[T, B, n_in]`` is mapped step by step."""
        if x.dim() == 4:
            _checks.tensor("x", x, rank=4, shape=(None, *self.in_shape))
            x = x.flatten(1)
        if x.dim() == 2:
            _checks.tensor("x", x, rank=2, shape=(None, self.n_in))
            return self.step(x, ConvNetState())[0]
        return super().forward(x)
