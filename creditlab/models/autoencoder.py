"""The classic bottleneck autoencoder as an MLP: 784-200-2-200-784.

    code = g(W_2 f(W_1 x + b_1) + b_2),   x̂ = W_4 f(W_3 code + b_3) + b_4,

trained to reconstruct its input (target = x, mean squared error), as in
Hinton & Salakhutdinov 2006's deep autoencoders (here with one hidden layer
each side).  The code activation g is f unless ``code_activation`` names
another (``"linear"``: the linear code of Hinton & Salakhutdinov and of
Lansdell, Prakash & Kording 2019).  The 2-unit code layer is
``locals.activities[2]``; the output layer is linear like every MLP's.
"""
from __future__ import annotations

from .. import _checks
from .mlp import MLP, MLP_ACTIVATIONS


def autoencoder(n_in: int = 784, hidden: int = 200, code: int = 2, activation: str = "tanh",
                code_activation: str | None = None, seed: int | None = None) -> MLP:
    """An ``MLP([n_in, hidden, code, hidden, n_in])``; its code is ``locals.activities[2]``."""
    sizes = [_checks.positive_int("n_in", n_in), _checks.positive_int("hidden", hidden),
             _checks.positive_int("code", code)]
    _checks.choice("activation", activation, MLP_ACTIVATIONS)
    middle = activation if code_activation is None else _checks.choice("code_activation", code_activation,
                                                                       MLP_ACTIVATIONS)
    return MLP(sizes + sizes[-2::-1], activation=(activation, middle, activation), seed=seed)
