"""Learned feedback: node perturbation teaches the feedback pathway (Lansdell, Prakash & Kording 2019).

"Learning to solve the credit assignment problem", ICLR 2020 / NeurIPS 2019
workshop.  Each hidden unit is noisy in a second, perturbed pass,

    h̃_i = f(W_i h̃_{i-1} + b_i) + c_h ξ_i,    ξ_i ~ N(0, I),

giving a perturbed loss L̃ and the node-perturbation estimate of ∂L/∂h_i

    λ̂_i = (L̃ − L) ξ_i / c_h                      (their eq. 3; E[λ̂_i] → ∂L/∂h_i as c_h → 0).

A synthetic gradient g_i = B_{i+1}ᵀ ẽ_src stands in for W_{i+1}ᵀ e_{i+1}, and
B_{i+1} is fitted by SGD on the least-squares problem of their eq. 4,

    B_{i+1} ← B_{i+1} − η_B ⟨ ẽ_src (B_{i+1}ᵀ ẽ_src − λ̂_i)ᵀ ⟩_batch,

where the error signal is the one backpropagated through the learned
feedback (their ẽ), with ẽ_{L} = e = ∂ℓ/∂y at the linear output layer:

    mode="layerwise" (their §3.1, FA-like):   ẽ_src = ẽ_{i+1},  B_{i+1} has W_{i+1}'s shape
                                                [n_{i+1}, n_i] and converges to W_{i+1} (Thm. 1–2);
    mode="direct"    (their §3.3, DFA-like):  ẽ_src = e,  B_{i+1} is [n_out, n_i] and converges
                                                to the product W_L ⋯ W_{i+1} (Cor. 1, linear nets).

The forward weights learn from the signal sent through B,

    ẽ_i = (B_{i+1}ᵀ ẽ_src) ⊙ f′(a_i),   ∂L/∂W_i ≈ ẽ_i h_{i-1}ᵀ   (written into ``p.grad``),

and B is updated by the rule itself (with ``feedback_lr`` = η_B) after the
errors of the step were sent, so any optimizer can drive the forward weights.
Every hidden layer is perturbed at once in the one noisy pass, as in the
paper; noise in other layers is independent of ξ_i and leaves λ̂_i unbiased.

λ̂ and ẽ are taken per example — ℓ_b for each batch entry, ẽ scaled back
from ∂(mean_b ℓ_b)/∂y by the batch size — so the loss must be a mean over
batch entries (``MSE``, ``CrossEntropy``).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import torch

from .. import _checks
from ..models.base import Model
from .feedback import FeedbackRule

LEARNED_FEEDBACK_MODES = ("layerwise", "direct")


def per_example_losses(loss: Callable, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ℓ_b = loss(outputs[b:b+1], target[b:b+1]) for every batch entry b, in one vectorised call."""
    return torch.func.vmap(lambda y, t: loss(y[None], t[None]))(outputs, target)


def relative_error(feedback: torch.Tensor, weight: torch.Tensor) -> float:
    """‖B − W‖_F / ‖W‖_F, the feedback-to-forward mismatch of Lansdell et al. Fig. 1A."""
    return float((feedback - weight).norm() / weight.norm())


class LearnedFeedback(FeedbackRule):
    """Feedback matrices learned by node perturbation; forward weights learn through them.

    ``mode``: ``"layerwise"`` or ``"direct"``; ``noise_std`` = c_h;
    ``feedback_lr`` = η_B; ``feedback``: initial matrices (default: random
    ~ U(±1/√n_i), the scale of ``nn.Linear``'s W_{i+1}, drawn with ``seed``).
    """

    name = "learned-feedback"
    fan_in_axis = 1

    def __init__(self, mode: str = "layerwise", noise_std: float = 0.01, feedback_lr: float = 0.2,
                 feedback: Sequence[torch.Tensor] | None = None, seed: int | None = None) -> None:
        super().__init__(feedback, seed)
        self.mode = _checks.choice("mode", mode, LEARNED_FEEDBACK_MODES)
        self.noise_std = _checks.positive("noise_std", noise_std)
        self.feedback_lr = _checks.positive("feedback_lr", feedback_lr)
        self._target: torch.Tensor | None = None
        self._loss: Callable | None = None

    def feedback_shapes(self, sizes: Sequence[int]) -> list[tuple[int, int]]:
        source = (lambda l: sizes[l + 1]) if self.mode == "layerwise" else (lambda l: sizes[-1])
        return [(source(l), sizes[l]) for l in range(1, len(sizes) - 1)]

    def begin(self, model: Model, x: torch.Tensor, target: Any, loss: Any) -> None:
        super().begin(model, x, target, loss)
        if x.shape[0] != 1:
            raise ValueError(f"{type(self).__name__} is a single-step rule: x must be [B, n_in] "
                             f"(one step), got {x.shape[0]} steps")
        self._target, self._loss = target, loss

    def deltas(self, local: NamedTuple, error: torch.Tensor) -> list[torch.Tensor]:
        out = [error]
        for l in range(len(self.feedback) - 1, -1, -1):
            source = out[-1] if self.mode == "layerwise" else error
            out.append(self.times_f_prime(source @ self.feedback[l], local, l + 1))
        return out[::-1]

    def step(self, t: int, local: NamedTuple, y_t: torch.Tensor, error_t: torch.Tensor | None) -> None:
        if error_t is None:
            return
        deltas = self.deltas(local, error_t)
        self.add_gradients(deltas, local.activities)
        batch = y_t.shape[0]
        sources = deltas[1:] if self.mode == "layerwise" else [error_t] * len(self.feedback)
        for b, source, lam in zip(self.feedback, sources, self.node_perturbation(local, y_t)):
            source = source * batch        # per-example error ∂ℓ_b/∂y
            residual = source @ b - lam    # Bᵀ ẽ − λ̂ for every example
            b.sub_(source.t() @ residual, alpha=self.feedback_lr / batch)

    def node_perturbation(self, local: NamedTuple, y_t: torch.Tensor) -> list[torch.Tensor]:
        """λ̂_i = (ℓ̃_b − ℓ_b) ξ_i / c_h for every hidden layer i, from one noisy pass."""
        layers = self.model.layers
        h, noises = local.activities[0], []
        for layer, f in zip(layers[:-1], self.model.fs):
            xi = torch.randn(h.shape[0], layer.out_features, device=h.device, dtype=h.dtype)
            h = f(layer(h)) + self.noise_std * xi
            noises.append(xi)
        y_noisy = layers[-1](h)
        clean = per_example_losses(self._loss, y_t.detach(), self._target)
        noisy = per_example_losses(self._loss, y_noisy, self._target)
        scale = ((noisy - clean) / self.noise_std)[:, None]
        return [scale * xi for xi in noises]
