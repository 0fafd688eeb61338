"""The classic bottleneck autoencoder as an MLP: 784-200-2-200-784.

    code = f(W_2 f(W_1 x + b_1) + b_2),   x̂ = W_4 f(W_3 code + b_3) + b_4,

trained to reconstruct its input (target = x, mean squared error), as in
Hinton & Salakhutdinov 2006's deep autoencoders (here with one hidden layer
each side).  The 2-unit code layer is ``locals.activities[2]``; the output
layer is linear like every MLP's.
"""
from __future__ import annotations

from .. import _checks
from .mlp import MLP


def autoencoder(n_in: int = 784, hidden: int = 200, code: int = 2, activation: str = "tanh",
                seed: int | None = None) -> MLP:
    """An ``MLP([n_in, hidden, code, hidden, n_in])``; its code is ``locals.activities[2]``."""
    sizes = [_checks.positive_int("n_in", n_in), _checks.positive_int("hidden", hidden),
             _checks.positive_int("code", code)]
    return MLP(sizes + sizes[-2::-1], activation=activation, seed=seed)
