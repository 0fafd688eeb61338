"""Single-step credit assignment through a feedback pathway: BP, FA, DFA, Kolen-Pollack.

For an :class:`~creditlab.models.MLP` with ``a_l = W_l h_{l-1} + b_l``,
``h_l = f(a_l)`` (l < L) and output ``y = a_L``, every rule here builds a
layer error δ_l from the output error e = ∂ℓ/∂y (read from the simulator)
and the layer-local quantities h_{l-1}, f′(a_l), then writes

    ∂L/∂W_l ≈ δ_l h_{l-1}ᵀ,    ∂L/∂b_l ≈ δ_l        (summed over batch and steps)

into ``p.grad``.  They differ only in the pathway that carries the error down:

    Backprop      δ_L = e,  δ_l = (W_{l+1}ᵀ δ_{l+1}) ⊙ f′(a_l)   (Rumelhart, Hinton & Williams 1986)
    FA            δ_l = (B_{l+1} δ_{l+1}) ⊙ f′(a_l),  B fixed random (Lillicrap et al. 2016)
    DFA           δ_l = (B_l e) ⊙ f′(a_l),  B_l fixed random [n_l, n_out] (Nøkland 2016)
    KolenPollack  FA whose B_{l+1} gets the transposed update of W_{l+1} plus weight decay
                  on both, so W_{l+1} − B_{l+1}ᵀ decays to zero (Kolen & Pollack 1994;
                  Akrout et al. 2019)

Feedback matrices live on the rule (``rule.feedback``), not on the model, so
``model.parameters()`` is still exactly what the forward pass uses.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import torch

from .. import _checks
from ..models.base import Model
from .base import Rule, accumulate_grad

#: signal ⊙ f′(a) from the layer's activity h = f(a) and pre-activation a, one fused
#: kernel each (the ones autograd's backward runs) instead of forming f′ and then multiplying
BackwardThrough = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
ACTIVATION_BACKWARD: dict[str, BackwardThrough] = {
    "tanh": lambda signal, h, a: torch.ops.aten.tanh_backward(signal, h),          # (1 − h²) signal
    "sigmoid": lambda signal, h, a: torch.ops.aten.sigmoid_backward(signal, h),    # h (1 − h) signal
    "relu": lambda signal, h, a: torch.ops.aten.threshold_backward(signal, a, 0),  # [a > 0] signal
    "linear": lambda signal, h, a: signal,
}


def weight_gradients(deltas: Sequence[torch.Tensor], activities: Sequence[torch.Tensor]
                     ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(δ_l h_{l-1}ᵀ, Σ_batch δ_l) for every layer l (deltas and activities ``[B, n]``)."""
    return [(d.t() @ h, d.sum(0)) for d, h in zip(deltas, activities)]


def uniform_feedback(shapes: Sequence[tuple[int, int]], fan_ins: Sequence[int], seed: int | None,
                     device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
    """Random matrices ~ U(−1/√fan_in, 1/√fan_in), the scale of ``nn.Linear``'s default weights."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return [((torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) / fan ** 0.5)
            .to(device=device, dtype=dtype) for shape, fan in zip(shapes, fan_ins)]


class FeedbackRule(Rule):
    """Shared machinery: output error in, layer errors δ_l out, δ_l h_{l-1}ᵀ into ``p.grad``.

    Subclasses define :meth:`deltas`; those with feedback matrices define
    :meth:`feedback_shapes` (and may take user matrices through ``feedback=``).
    """

    model_kinds = ("feedforward",)
    needs_output_error = True
    #: axis of a feedback matrix whose size scales its random initialisation (the forward fan-in)
    fan_in_axis = 0

    def __init__(self, feedback: Sequence[torch.Tensor] | None = None, seed: int | None = None) -> None:
        super().__init__()
        if feedback is not None:
            if isinstance(feedback, torch.Tensor) or not all(isinstance(b, torch.Tensor) for b in feedback):
                raise TypeError("feedback must be a sequence of torch.Tensor matrices (one per feedback "
                                f"pathway), got {type(feedback).__name__}")
            feedback = [b.detach().clone() for b in feedback]
        if seed is not None:
            _checks.positive_int("seed", seed, minimum=0)
        self.user_feedback = feedback
        self.seed = seed
        self.feedback: list[torch.Tensor] = []
        self._sums: list[list[torch.Tensor]] | None = None
        self._backward: list[BackwardThrough] = []

    # -- attach: check the model, build the feedback pathway ---------------------------
    def attach(self, model: Model) -> None:
        super().attach(model)
        layers = getattr(model, "layers", None)
        activations = getattr(model, "activations", None)
        if layers is None or activations is None:
            raise TypeError(f"{type(self).__name__} trains creditlab.models.MLP (layers + activations), "
                            f"got {type(model).__name__}")
        unknown = [name for name in activations if name not in ACTIVATION_BACKWARD]
        if unknown:
            raise TypeError(f"{type(self).__name__} needs f′ of the activation; it knows "
                            f"{', '.join(ACTIVATION_BACKWARD)}, got {unknown[0]!r}")
        self._backward = [ACTIVATION_BACKWARD[name] for name in activations]
        shapes = self.feedback_shapes(model.sizes)
        if self.user_feedback is not None:
            self.feedback = self._checked_feedback(self.user_feedback, shapes, model)
            self.user_feedback = None
        elif [tuple(b.shape) for b in self.feedback] != shapes:
            # kept across re-attachment to a net of the same sizes (rule_alignment re-attaches)
            self.feedback = uniform_feedback(shapes, [s[self.fan_in_axis] for s in shapes], self.seed,
                                             model.device, model.dtype)

    def feedback_shapes(self, sizes: Sequence[int]) -> list[tuple[int, int]]:
        """Shapes of the feedback matrices for layer sizes ``[n_0, …, n_L]``."""
        return []

    def _checked_feedback(self, feedback: Sequence[torch.Tensor], shapes: list[tuple[int, int]],
                          model: Model) -> list[torch.Tensor]:
        if len(feedback) != len(shapes):
            raise ValueError(f"feedback must hold {len(shapes)} matrices for an MLP of sizes {model.sizes} "
                             f"(shapes {shapes}), got {len(feedback)}")
        for i, (b, shape) in enumerate(zip(feedback, shapes)):
            _checks.tensor(f"feedback[{i}]", b, rank=2, shape=shape)
        return [b.to(device=model.device, dtype=model.dtype) for b in feedback]

    # -- per run --------------------------------------------------------------------------
    def begin(self, model: Model, x: torch.Tensor, target: Any, loss: Any) -> None:
        super().begin(model, x, target, loss)
        self._sums = None

    def times_f_prime(self, signal: torch.Tensor, local: NamedTuple, l: int) -> torch.Tensor:
        """signal ⊙ f′(a_l) for hidden layer l = 1 … L−1 (``l - 1`` indexes the hidden layers)."""
        return self._backward[l - 1](signal, local.activities[l], local.preactivations[l - 1])

    def deltas(self, local: NamedTuple, error: torch.Tensor) -> list[torch.Tensor]:
        """Layer errors δ_1 … δ_L (``[B, n_l]``) for one step."""
        raise NotImplementedError

    def step(self, t: int, local: NamedTuple, y_t: torch.Tensor, error_t: torch.Tensor | None) -> None:
        if error_t is None:
            return
        self.add_gradients(self.deltas(local, error_t), local.activities)

    def add_gradients(self, deltas: Sequence[torch.Tensor], activities: Sequence[torch.Tensor]) -> None:
        """Add this step's δ_l h_{l-1}ᵀ and δ_l to the run's sums."""
        grads = weight_gradients(deltas, activities)
        if self._sums is None:
            self._sums = [list(g) for g in grads]
        else:
            for total, (gw, gb) in zip(self._sums, grads):
                total[0].add_(gw)
                total[1].add_(gb)

    def end(self, outputs: torch.Tensor, target: Any, loss: torch.Tensor | None) -> None:
        if self._sums is None:
            raise ValueError(f"{type(self).__name__} needs a target to compute the output error; "
                             "pass target= to sim.run")
        # the sums are this run's own tensors: an empty p.grad takes them without a copy
        for layer, (gw, gb) in zip(self.model.layers, self._sums):
            accumulate_grad(layer.weight, gw, owned=True)
            accumulate_grad(layer.bias, gb, owned=True)
        self._sums = None


class Backprop(FeedbackRule):
    """Backpropagation computed explicitly from the layer locals.

        δ_L = ∂ℓ/∂a_L,   δ_l = (W_{l+1}ᵀ δ_{l+1}) ⊙ f′(a_l),   ∂L/∂W_l = δ_l h_{l-1}ᵀ

    (Rumelhart, Hinton & Williams 1986).  Equals autograd's gradient exactly.
    """

    name = "backprop"

    def __init__(self) -> None:
        super().__init__()

    def deltas(self, local: NamedTuple, error: torch.Tensor) -> list[torch.Tensor]:
        layers = self.model.layers
        out = [error]
        for l in range(len(layers) - 2, -1, -1):
            out.append(self.times_f_prime(out[-1] @ layers[l + 1].weight.detach(), local, l + 1))
        return out[::-1]


class FA(FeedbackRule):
    """Feedback alignment (Lillicrap, Cownden, Tweed & Akerman 2016, Nat. Commun. 7:13276).

        δ_L = ∂ℓ/∂a_L,   δ_l = (B_{l+1} δ_{l+1}) ⊙ f′(a_l),   ∂L/∂W_l ≈ δ_l h_{l-1}ᵀ

    with fixed random B_{l+1} of W_{l+1}ᵀ's shape ``[n_l, n_{l+1}]`` (drawn
    ~ U(±1/√n_l) with ``seed``), or the matrices given as ``feedback``.
    With B_{l+1} = W_{l+1}ᵀ this is backprop.
    """

    name = "fa"

    def feedback_shapes(self, sizes: Sequence[int]) -> list[tuple[int, int]]:
        return [(sizes[l], sizes[l + 1]) for l in range(1, len(sizes) - 1)]

    def deltas(self, local: NamedTuple, error: torch.Tensor) -> list[torch.Tensor]:
        out = [error]
        for l in range(len(self.feedback) - 1, -1, -1):
            out.append(self.times_f_prime(out[-1] @ self.feedback[l].t(), local, l + 1))
        return out[::-1]


class DFA(FeedbackRule):
    """Direct feedback alignment (Nøkland 2016, NeurIPS).

        δ_L = e = ∂ℓ/∂a_L,   δ_l = (B_l e) ⊙ f′(a_l),   ∂L/∂W_l ≈ δ_l h_{l-1}ᵀ

    The output error goes straight to every hidden layer through a fixed
    random B_l ``[n_l, n_out]`` (or the matrices given as ``feedback``).
    """

    name = "dfa"

    def feedback_shapes(self, sizes: Sequence[int]) -> list[tuple[int, int]]:
        return [(sizes[l], sizes[-1]) for l in range(1, len(sizes) - 1)]

    def deltas(self, local: NamedTuple, error: torch.Tensor) -> list[torch.Tensor]:
        return [self.times_f_prime(error @ b.t(), local, l + 1) for l, b in enumerate(self.feedback)] + [error]


class KolenPollack(FA):
    """Kolen-Pollack learning (Kolen & Pollack 1994; Akrout et al. 2019, NeurIPS).

    Errors travel down as in FA, δ_l = (B_{l+1} δ_{l+1}) ⊙ f′(a_l), and both
    pathways learn from the same local product h_l δ_{l+1}ᵀ with weight decay λ:

        ΔW_{l+1} = −η (δ_{l+1} h_lᵀ + λ W_{l+1})
        ΔB_{l+1} = −η (h_l δ_{l+1}ᵀ + λ B_{l+1})

    so Δ(W_{l+1} − B_{l+1}ᵀ) = −ηλ (W_{l+1} − B_{l+1}ᵀ) and B_{l+1} → W_{l+1}ᵀ.
    The forward half goes into ``p.grad`` (δ_l h_{l-1}ᵀ plus λ W_l on the
    weights, not the biases).  The feedback half is applied in one of two ways:

    - ``lr=None`` (default): ``h_l δ_{l+1}ᵀ + λ B_{l+1}`` is written into the
      ``.grad`` of the feedback matrices, which ``rule.parameters()`` returns
      for the user's optimizer — ``Adam([*net.parameters(), *rule.parameters()])``
      after the simulator has attached the rule.  An element-wise optimizer
      then gives B the transposed update of W (as Akrout et al. train B).
    - ``lr=η``: the rule itself takes the SGD step above in ``end()``; with
      ``torch.optim.SGD(lr=η)`` on the forward weights the two updates are
      exact transposes.

    With Adam the λ terms above no longer give that contraction: Adam divides
    each element's step, decay included, by √v̂ of that element's gradient
    history, so W − Bᵀ shrinks at ≈ ηλ/√v̂ per step, a rate set by the
    gradients' scale rather than by η and λ (at λ = 1e-4 on the Fashion-MNIST
    benchmark it barely moves in 10 epochs, and B stays as far from Wᵀ as FA's
    fixed matrix).  The Adam form of the rule is ``weight_decay=0`` here
    and decoupled decay on both pathways in the optimizer,
    ``AdamW([{"params": [*weights, *rule.parameters()], "weight_decay": λ}, …])``:
    W and Bᵀ then see identical gradients, hence identical Adam steps, and
    W − Bᵀ shrinks by exactly (1 − ηλ) per step as in the SGD form.  The
    alignment is bought with that same decay on W: a λ strong enough to
    forget W₀ − B₀ᵀ in a short run (λ = 5 in the first of 10 Fashion-MNIST
    epochs, ‖B − Wᵀ‖/‖W‖ → 0.15) costs backprop under the same schedule as
    much accuracy as it costs this rule (``benchmarks/single_step_fmnist.py``).
    """

    name = "kp"

    def __init__(self, lr: float | None = None, weight_decay: float = 1e-4,
                 feedback: Sequence[torch.Tensor] | None = None, seed: int | None = None) -> None:
        super().__init__(feedback, seed)
        self.lr = None if lr is None else _checks.positive("lr", lr)
        self.weight_decay = _checks.non_negative("weight_decay", weight_decay)

    def parameters(self) -> list[torch.Tensor]:
        """The feedback matrices B_{l+1}, for an optimizer (when ``lr=None``)."""
        if self.model is None:
            raise ValueError("KolenPollack.parameters() needs the rule attached first: build "
                             "cl.Simulator(net, rule) before the optimizer")
        return list(self.feedback)

    def end(self, outputs: torch.Tensor, target: Any, loss: torch.Tensor | None) -> None:
        sums = self._sums
        if sums is not None:
            for b, (gw, _) in zip(self.feedback, sums[1:]):
                if self.lr is None:
                    accumulate_grad(b, gw.t() + self.weight_decay * b)
                else:
                    b.mul_(1.0 - self.lr * self.weight_decay).sub_(gw.t(), alpha=self.lr)
            if self.weight_decay:
                for (gw, _), layer in zip(sums, self.model.layers):
                    gw.add_(layer.weight.detach(), alpha=self.weight_decay)
        super().end(outputs, target, loss)
