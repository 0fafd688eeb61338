"""Losses over a run's outputs ``[T, B, K]``.

A :class:`TimeLocalLoss` is a sum of per-step terms L = Σ_t ℓ_t(y_t), so an
online rule can read the output error ∂ℓ_t/∂y_t at step t without keeping
the run in memory.  The full-sequence call computes the same value in one
vectorised pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _checks


#: steps per slice when a loss is evaluated without a graph
_SLICE = 256


class TimeLocalLoss:
    """L(outputs, target) = Σ_t ℓ_t(y_t, target)."""

    name = "loss"

    def __call__(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def output_error(self, t: int, n_steps: int, y_t: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """∂ℓ_t/∂y_t for a run of ``n_steps`` steps ([B, K]); zeros where ℓ_t is absent."""
        raise NotImplementedError

    def check_target(self, outputs_shape: tuple[int, ...], target: torch.Tensor) -> None:
        """Raise a clear error when ``target`` cannot go with outputs of this shape."""

    @torch.no_grad()
    def evaluate(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss value without a graph; equal to ``self(outputs, target)``.

        Subclasses whose call builds full-size ``[T, B, K]`` temporaries sum
        over slices of time instead, so an online run's memory stays flat in T.
        """
        return self(outputs, target)


class MSE(TimeLocalLoss):
    """Mean squared error over all steps, batch entries and outputs (the default)."""

    name = "mse"

    def __call__(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((outputs - target) ** 2).mean()

    def output_error(self, t: int, n_steps: int, y_t: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 2.0 * (y_t - target[t]) / (n_steps * y_t.numel())

    @torch.no_grad()
    def evaluate(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if outputs.dim() != 3:
            return self(outputs, target)
        return self.per_trial(outputs, target).mean()

    @torch.no_grad()
    def per_trial(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L_b for each trial of ``outputs [T, B, K]`` (their mean is the batch loss), in slices of time."""
        total = sum(((o - t) ** 2).sum((0, 2)) for o, t in zip(outputs.split(_SLICE), target.split(_SLICE)))
        return total / (outputs.shape[0] * outputs.shape[2])

    def check_target(self, outputs_shape: tuple[int, ...], target: torch.Tensor) -> None:
        _checks.tensor("target", target, rank=len(outputs_shape), shape=outputs_shape)
        if not target.is_floating_point():
            raise TypeError(f"target must be a floating-point tensor for mean squared error, got dtype {target.dtype}")


class WindowCrossEntropy(TimeLocalLoss):
    """Cross-entropy of softmax(y_t) against a class label, averaged over a window.

    L = (1/|W|) Σ_{t∈W} mean_b CE(y_t^b, label^b), the loss Bellec et al. 2020
    use for cue accumulation (W = the last ``window`` steps of the trial).
    """

    name = "cross_entropy"

    def __init__(self, window: int) -> None:
        self.window = _checks.positive_int("window", window)

    def _start(self, n_steps: int) -> int:
        return max(n_steps - self.window, 0)

    def __call__(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scored = outputs[self._start(outputs.shape[0]):]
        logp = F.log_softmax(scored, dim=-1)
        return -logp.gather(-1, target.view(1, -1, 1).expand(scored.shape[0], -1, 1)).mean()

    def output_error(self, t: int, n_steps: int, y_t: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        start = self._start(n_steps)
        if t < start:
            return torch.zeros_like(y_t)
        onehot = F.one_hot(target, y_t.shape[-1]).to(y_t.dtype)
        return (torch.softmax(y_t, -1) - onehot) / ((n_steps - start) * y_t.shape[0])

    def check_target(self, outputs_shape: tuple[int, ...], target: torch.Tensor) -> None:
        _checks.tensor("target", target, rank=1, shape=(outputs_shape[1],), finite=False)
        if target.is_floating_point():
            raise TypeError(f"target must hold integer class labels for cross-entropy, got dtype {target.dtype}")

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class chosen from the mean output over the scored window."""
        return outputs[self._start(outputs.shape[0]):].mean(0).argmax(-1)


class CrossEntropy(TimeLocalLoss):
    """Softmax cross-entropy against integer class labels, averaged over steps and batch.

    L = (1/(T·B)) Σ_t Σ_b −log softmax(y_t^b)[label^b], so ∂ℓ_t/∂y_t = (softmax(y_t) − onehot)/(T·B).
    Outputs are ``[B, K]`` (one feed-forward step) or ``[T, B, K]``; labels are ``[B]``
    (the same label at every step) or ``[T, B]``.
    """

    name = "ce"

    @staticmethod
    def _labels(target: torch.Tensor, t: int) -> torch.Tensor:
        return target[t] if target.dim() == 2 else target

    def __call__(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if outputs.dim() == 2:
            return F.cross_entropy(outputs, target)
        labels = target.expand(outputs.shape[0], -1) if target.dim() == 1 else target
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), labels.reshape(-1))

    def output_error(self, t: int, n_steps: int, y_t: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        error = torch.softmax(y_t, -1)
        # a scatter of −1 onto the label column: half the cost of advanced-index assignment
        labels = self._labels(target, t).unsqueeze(-1)
        error.scatter_add_(-1, labels, error.new_full(labels.shape, -1.0))
        return error.div_(n_steps * y_t.shape[0])

    def check_target(self, outputs_shape: tuple[int, ...], target: torch.Tensor) -> None:
        batch = outputs_shape[-2]
        if len(outputs_shape) == 3 and isinstance(target, torch.Tensor) and target.dim() == 2:
            _checks.tensor("target", target, rank=2, shape=outputs_shape[:2], finite=False)
        else:
            _checks.tensor("target", target, rank=1, shape=(batch,), finite=False)
        if target.is_floating_point() or target.dtype == torch.bool:
            raise TypeError(f"target must hold integer class labels for cross-entropy, got dtype {target.dtype}")
        if target.numel():
            low, high = (int(v) for v in torch.aminmax(target))
            if low < 0 or high >= outputs_shape[-1]:
                raise ValueError(f"target labels must lie in [0, {outputs_shape[-1] - 1}], "
                                 f"got values in [{low}, {high}]")

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class chosen from the output (mean over steps for a sequence)."""
        return (outputs if outputs.dim() == 2 else outputs.mean(0)).argmax(-1)


mse = MSE()
