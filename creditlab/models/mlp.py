"""Multi-layer perceptron: the engine run for a single step (T = 1).

    a_l = W_l h_{l-1} + b_l,   h_l = f_l(a_l)  (l < L),   y = a_L

with one activation f for every hidden layer, or one per hidden layer
(``activation=("tanh", "linear", "tanh")``: a linear bottleneck code).

``step`` returns per-layer activities and pre-activations as locals so that
single-step rules (FA, DFA, perturbation, predictive coding) read what a
layer-local rule would see.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
from torch import nn

from .. import _checks
from .base import Model

MLP_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")
MLP_INITS = ("default", "xavier")


class MLPLocals(NamedTuple):
    activities: tuple[torch.Tensor, ...]       # h_0 = x, h_1, …, h_{L-1}
    preactivations: tuple[torch.Tensor, ...]   # a_1, …, a_L


class MLPState(NamedTuple):
    """A feed-forward net has no state between steps."""


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
            "linear": lambda a: a}[name]


def hidden_activations(activation: str | Sequence[str], n_hidden: int) -> tuple[str, ...]:
    """One activation name per hidden layer, from one shared name or a sequence of ``n_hidden`` names."""
    if isinstance(activation, str):
        return (_checks.choice("activation", activation, MLP_ACTIVATIONS),) * n_hidden
    if isinstance(activation, bytes) or not isinstance(activation, Sequence):
        raise TypeError(f"activation must be one of {', '.join(map(repr, MLP_ACTIVATIONS))} or a sequence of "
                        f"them, one per hidden layer; got {type(activation).__name__}")
    names = tuple(activation)
    if len(names) != n_hidden:
        raise ValueError(f"activation must name one activation per hidden layer ({n_hidden} for these sizes), "
                         f"got {len(names)}: {names!r}")
    return tuple(_checks.choice(f"activation[{i}]", name, MLP_ACTIVATIONS) for i, name in enumerate(names))


class MLP(Model):
    """Fully connected net ``sizes = [n_in, h_1, …, n_out]``.

    ``activation``: one of ``MLP_ACTIVATIONS`` for every hidden layer, or a
    sequence naming one per hidden layer; ``activations`` holds the per-layer
    names and ``activation`` the shared name, or the tuple when they differ.

    ``init`` picks the initial parameters (drawn with ``seed`` when given):

    - ``"default"``: PyTorch's ``nn.Linear`` initialisation,
      W_l, b_l ~ U(−1/√n_{l-1}, 1/√n_{l-1});
    - ``"xavier"``: Glorot & Bengio (2010) uniform initialisation,
      W_l ~ U(−a, a) with a = √(6 / (n_{l-1} + n_l)) (variance 2 / (n_{l-1} + n_l)),
      and b_l = 0 — the initialisation BioTorch (Sanfiz & Akrout 2021) uses
      for its layers.
    """

    kind = "feedforward"

    def __init__(self, sizes: Sequence[int], activation: str | Sequence[str] = "tanh", dt: float = 1e-3,
                 seed: int | None = None, init: str = "default") -> None:
        super().__init__()
        if isinstance(sizes, (str, bytes)) or len(sizes) < 2:
            raise ValueError(f"sizes must list at least two layer sizes [n_in, …, n_out], got {sizes!r}")
        self.sizes = [_checks.positive_int(f"sizes[{i}]", s) for i, s in enumerate(sizes)]
        self.activations = hidden_activations(activation, len(self.sizes) - 2)
        shared = activation if isinstance(activation, str) else (
            self.activations[0] if len(set(self.activations)) == 1 else None)
        self.activation: str | tuple[str, ...] = self.activations if shared is None else shared
        self.fs = tuple(activation_fn(name) for name in self.activations)
        self.n_in, self.n_out = self.sizes[0], self.sizes[-1]
        self.n_units = sum(self.sizes[1:])
        self.dt = _checks.positive("dt", dt)
        self.init = _checks.choice("init", init, MLP_INITS)
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.sizes[:-1], self.sizes[1:]))
            if self.init == "xavier":
                for layer in self.layers:
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)

    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None, traces: bool = False) -> MLPState:
        return MLPState()

    def input_current(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def split_noise(self, noise: torch.Tensor | Sequence[torch.Tensor | None] | None
                    ) -> tuple[torch.Tensor | None, ...]:
        """Per-layer pre-activation perturbations ξ_1 … ξ_L from ``noise``.

        ``noise`` is ``None``, a tuple with one entry (tensor or ``None``) per
        layer, or one tensor ``[…, n_units]`` laid out layer after layer.
        """
        n_layers = len(self.layers)
        if noise is None:
            return (None,) * n_layers
        if isinstance(noise, torch.Tensor):
            if noise.shape[-1] != self.n_units:
                raise ValueError(f"noise must have last size n_units={self.n_units} (all layers' units), "
                                 f"got shape {tuple(noise.shape)}")
            return tuple(noise.split(self.sizes[1:], dim=-1))
        noise = tuple(noise)
        if len(noise) != n_layers:
            raise ValueError(f"noise must hold one perturbation per layer ({n_layers}), got {len(noise)}")
        return noise

    def step(self, x_t: torch.Tensor, state: MLPState, i_in: torch.Tensor | None = None,
             noise: torch.Tensor | Sequence[torch.Tensor | None] | None = None
             ) -> tuple[torch.Tensor, MLPState, MLPLocals]:
        """One forward pass; ``noise`` adds ξ_l to the pre-activations: a_l = W_l h_{l-1} + b_l + ξ_l."""
        h, activities, pre = x_t, [x_t], []
        for index, (layer, xi) in enumerate(zip(self.layers, self.split_noise(noise))):
            a = layer(h) if xi is None else layer(h) + xi
            pre.append(a)
            if index < len(self.layers) - 1:
                h = self.fs[index](a)
                activities.append(h)
            else:
                h = a
        return h, state, MLPLocals(tuple(activities), tuple(pre))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, n_in]`` → ``[B, n_out]``; a ``[T, B, n_in]`` sequence is mapped step by step."""
        if x.dim() == 2:
            _checks.tensor("x", x, rank=2, shape=(None, self.n_in))
            return self.step(x, MLPState())[0]
        return super().forward(x)
