"""The task protocol: seeded generators of ``(x, target)`` batches.

Every task knows its input/output sizes, clock and length, draws batches from
its own ``torch.Generator`` (so a checkpoint can save and restore the stream),
and offers the loss and metrics it is scored with:

    x, y = task.sample(batch_size=64)        # x: [T, B, n_in]
    loss = task.loss(outputs, y)             # a TimeLocalLoss: online rules can use it
    task.metrics(outputs, y)                 # {"loss": …, "accuracy": …} or {"loss": …, "nmse": …}
"""
from __future__ import annotations

from typing import Any

import torch

from .. import _checks
from ..losses import TimeLocalLoss


#: every concrete task by its CLI name (filled as task classes are defined)
TASKS: dict[str, type["Task"]] = {}


class Task:
    """Base class; subclasses set sizes and implement ``_generate``.

    A subclass that sets its own ``name`` is registered in :data:`TASKS`.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            TASKS[cls.name] = cls

    name: str = "task"
    n_in: int
    n_out: int
    n_steps: int
    dt: float
    #: "classification" (target: labels [B]) or "regression" (target: [T, B, n_out])
    kind: str = "regression"
    loss: TimeLocalLoss

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, batch_size: int, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw a batch: ``x [T, B, n_in]`` and the target (labels ``[B]`` or ``[T, B, n_out]``)."""
        _checks.positive_int("batch_size", batch_size)
        x, y = self._generate(batch_size)
        x = x.to(device=device, dtype=dtype)
        y = y.to(device=device) if self.kind == "classification" else y.to(device=device, dtype=dtype)
        return x, y

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def metrics(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Loss plus accuracy (classification) or normalised MSE (regression)."""
        out: dict[str, float] = {"loss": float(self.loss(outputs, target))}
        if self.kind == "classification":
            out["accuracy"] = float((self.loss.predictions(outputs) == target).float().mean())
        else:
            out["nmse"] = float(((outputs - target) ** 2).mean() / target.var().clamp_min(1e-12))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
