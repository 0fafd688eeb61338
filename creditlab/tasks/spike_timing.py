"""Tasks in first-spike times: Bohte's spike-time XOR and population-coded Iris.

Both come from Bohte, Kok & La Poutré 2002 (Neurocomputing 48:17–37) and are
posed for :class:`creditlab.models.SRM`: inputs are spike rasters
``x [T, B, n_in]`` (one spike per input at most), outputs are first-spike
times, and the error is Bohte's eq. 5 on the last step's output,

    E = ½ Σ_j ((t_j − t_j^d) / unit)²    (averaged over the batch),

with times in seconds and errors measured in ``unit`` (1 ms by default, as
Bohte reports them).  A silent output neuron is scored at the end of the
window (the SRM's output convention).

SpikeXOR
    Inputs fire at 0 ms ("0") or 6 ms ("1"), plus a reference input at 0 ms;
    the output should fire at 16 ms when the two inputs are equal and at
    10 ms when they differ.  Converged (Bohte's criterion, in the stricter
    form used here): Σ_patterns (t − t^d)² < 1 ms², which puts every pattern
    within 1 ms of its target.

IrisSpikes
    Fisher's Iris (150 flowers, 4 measurements, 3 species) shipped as
    ``data/iris.csv`` (sha256 below; the UCI rows 35 and 38 corrected to
    Fisher's 1936 values, as in scikit-learn's copy).  Each measurement is
    population-coded by m Gaussian receptive fields (Bohte §3.1): over the
    feature's range [I_min, I_max], field i = 1 … m has centre
    μ_i = I_min + (2i − 3)/2 · (I_max − I_min)/(m − 2) and width
    σ = (I_max − I_min) / (γ (m − 2)), γ = 1.5.  A response r ∈ (0, 1] is
    sent as a spike at (1 − r)·``code_window`` rounded to the clock; fields
    with r < ``min_response`` stay silent.  A reference input fires at 0 ms.
    Three output neurons code the class: the label's neuron should fire at
    ``early``, the others at ``late``; the prediction is the earliest output.
    The flowers are split by a seeded, per-class shuffle into equal train and
    test halves (75 / 75 as in Bohte's experiment).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch

from .. import _checks
from ..losses import TimeLocalLoss
from ..models.srm import spike_raster
from .base import Task

IRIS_PATH = Path(__file__).with_name("data") / "iris.csv"
IRIS_SHA256 = "9cc1c345c71bcc9b486b74cbf6063fa66f4bb5e0f603a4b3c3471ec2e5e8e355"
IRIS_CLASSES = ("setosa", "versicolor", "virginica")


def final_times(outputs: torch.Tensor) -> torch.Tensor:
    """The first-spike times ``[B, K]`` of a run's outputs (``[T, B, K]``: the last step)."""
    return outputs[-1] if outputs.dim() == 3 else outputs


class SpikeTimeLoss(TimeLocalLoss):
    """E = ½ mean_b Σ_j ((t_j − t_j^d)/unit)² on the last step's output (Bohte eq. 5).

    ``target`` holds the desired spike times ``[B, n_out]`` in seconds.
    """

    name = "spike_time"

    def __init__(self, unit: float = 1e-3) -> None:
        self.unit = _checks.positive("unit", unit)

    def __call__(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        error = (final_times(outputs) - target) / self.unit
        return 0.5 * (error ** 2).sum(-1).mean()

    def output_error(self, t: int, n_steps: int, y_t: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if t != n_steps - 1:
            return torch.zeros_like(y_t)
        return (y_t - target) / (self.unit ** 2 * y_t.shape[0])

    def check_target(self, outputs_shape: tuple[int, ...], target: torch.Tensor) -> None:
        _checks.tensor("target", target, rank=2, shape=outputs_shape[-2:])
        if not target.is_floating_point():
            raise TypeError(f"target must hold desired spike times in seconds (floating point), got dtype {target.dtype}")


class FirstSpikeClassLoss(SpikeTimeLoss):
    """Spike-time error against class labels: the label's output should fire at ``early``, the rest at ``late``."""

    name = "first_spike_class"

    def __init__(self, early: float, late: float, unit: float = 1e-3) -> None:
        super().__init__(unit)
        self.early = _checks.non_negative("early", early)
        self.late = _checks.positive("late", late)
        if not self.early < self.late:
            raise ValueError(f"early must come before late, got early={early}, late={late}")

    def desired_times(self, labels: torch.Tensor, n_out: int, like: torch.Tensor) -> torch.Tensor:
        """``[B, n_out]``: ``early`` at the label's neuron, ``late`` elsewhere."""
        onehot = torch.nn.functional.one_hot(labels, n_out).to(like.dtype)
        return self.late + (self.early - self.late) * onehot

    def __call__(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        times = final_times(outputs)
        return super().__call__(times, self.desired_times(target, times.shape[-1], times))

    def output_error(self, t: int, n_steps: int, y_t: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().output_error(t, n_steps, y_t, self.desired_times(target, y_t.shape[-1], y_t))

    def check_target(self, outputs_shape: tuple[int, ...], target: torch.Tensor) -> None:
        _checks.tensor("target", target, rank=1, shape=(outputs_shape[-2],), finite=False)
        if target.is_floating_point() or target.dtype == torch.bool:
            raise TypeError(f"target must hold integer class labels, got dtype {target.dtype}")
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= outputs_shape[-1]):
            raise ValueError(f"target labels must lie in [0, {outputs_shape[-1] - 1}], "
                             f"got range [{int(target.min())}, {int(target.max())}]")

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """The class whose output neuron fires first."""
        return final_times(outputs).argmin(-1)


class SpikeXOR(Task):
    """Bohte's XOR in spike times: ``x [T, B, 3]`` raster → desired output time ``[B, 1]`` (s)."""

    name = "spike-xor"
    kind = "regression"
    n_in = 3
    n_out = 1

    def __init__(self, dt: float = 5e-4, window: float = 30e-3, early: float = 0.0, late: float = 6e-3,
                 equal_time: float = 16e-3, differ_time: float = 10e-3, seed: int = 0) -> None:
        super().__init__(seed)
        self.dt = _checks.positive("dt", dt)
        self.window = _checks.positive("window", window)
        self.n_steps = int(round(self.window / self.dt)) + 1
        self.early = _checks.non_negative("early", early)
        self.late = _checks.non_negative("late", late)
        self.equal_time = _checks.in_range("equal_time", equal_time, 0.0, self.window)
        self.differ_time = _checks.in_range("differ_time", differ_time, 0.0, self.window)
        if max(self.early, self.late) > self.window:
            raise ValueError(f"early and late input times must lie in the window [0, {self.window}] s, "
                             f"got early={early}, late={late}")
        self.loss = SpikeTimeLoss()

    def patterns(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """All four patterns: raster ``[T, 4, 3]`` and desired times ``[4, 1]`` (00, 01, 10, 11)."""
        return self._encode(torch.arange(4), dtype)

    def _encode(self, index: torch.Tensor, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        bits = torch.stack([index // 2, index % 2], dim=1)
        times = torch.where(bits == 1, self.late, self.early).to(torch.float64)
        times = torch.cat([times, torch.zeros(len(index), 1, dtype=torch.float64)], dim=1)  # reference input
        target = torch.where(bits[:, 0] == bits[:, 1], self.equal_time, self.differ_time)
        return spike_raster(times, self.n_steps, self.dt).to(dtype), target[:, None].to(dtype)

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._encode(torch.randint(4, (batch_size,), generator=self.generator))

    @torch.no_grad()
    def metrics(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Loss, summed squared error in ms² over the batch, and the worst timing error in ms."""
        error_ms = (final_times(outputs) - target) / 1e-3
        return {"loss": float(self.loss(outputs, target)), "sse_ms2": float((error_ms ** 2).sum()),
                "max_error_ms": float(error_ms.abs().max())}

    def converged(self, outputs: torch.Tensor, target: torch.Tensor) -> bool:
        """Σ (t − t^d)² < 1 ms² over the batch (every pattern within 1 ms)."""
        return self.metrics(outputs, target)["sse_ms2"] < 1.0


def load_iris(path: Path | str | None = None, verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Fisher's Iris: features ``[150, 4]`` (cm, float64) and labels ``[150]`` (setosa, versicolor, virginica)."""
    path = IRIS_PATH if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path names no Iris CSV file: {path}")
    raw = path.read_bytes()
    if verify and hashlib.sha256(raw).hexdigest() != IRIS_SHA256:
        raise ValueError(f"{path} does not match the shipped Iris data (sha256 {IRIS_SHA256}); "
                         "pass verify=False for a deliberately different copy")
    lines = raw.decode("ascii").strip().splitlines()[1:]
    rows = [line.split(",") for line in lines]
    if any(len(row) != 5 or row[4] not in IRIS_CLASSES for row in rows):
        raise ValueError(f"{path} must hold rows of 4 measurements and a species in {IRIS_CLASSES}")
    features = torch.tensor([[float(v) for v in row[:4]] for row in rows], dtype=torch.float64)
    labels = torch.tensor([IRIS_CLASSES.index(row[4]) for row in rows], dtype=torch.long)
    return features, labels


def population_times(values: torch.Tensor, low: torch.Tensor, high: torch.Tensor, n_fields: int,
                     code_window: float, dt: float, gamma: float = 1.5,
                     min_response: float = 0.1) -> torch.Tensor:
    """Bohte's Gaussian receptive-field code: ``values [B, F]`` → spike times ``[B, F·n_fields]`` (∞ = silent)."""
    n_fields = _checks.positive_int("n_fields", n_fields, minimum=3)
    i = torch.arange(1, n_fields + 1, dtype=values.dtype)
    span = (high - low)[:, None] / (n_fields - 2)                            # [F, 1]
    centres = low[:, None] + (2 * i - 3) / 2 * span                          # [F, m]
    sigma = span / gamma
    response = torch.exp(-0.5 * ((values[:, :, None] - centres) / sigma) ** 2)  # [B, F, m]
    times = torch.round((1 - response) * code_window / dt) * dt
    return torch.where(response >= min_response, times, torch.full_like(times, math.inf)).flatten(1)


class IrisSpikes(Task):
    """Population-coded Iris: ``x [T, B, 4·n_fields + 1]`` raster → label ``[B]``; earliest output wins."""

    name = "iris"
    kind = "classification"
    n_out = 3

    def __init__(self, n_fields: int = 12, dt: float = 5e-4, code_window: float = 10e-3,
                 window: float = 30e-3, early: float = 12e-3, late: float = 16e-3,
                 min_response: float = 0.1, seed: int = 0) -> None:
        super().__init__(seed)
        self.n_fields = _checks.positive_int("n_fields", n_fields, minimum=3)
        self.dt = _checks.positive("dt", dt)
        self.code_window = _checks.positive("code_window", code_window)
        self.window = _checks.positive("window", window)
        if self.code_window > self.window:
            raise ValueError(f"code_window must fit in window ({window} s), got {code_window}")
        self.min_response = _checks.in_range("min_response", min_response, 0.0, 1.0)
        self.n_steps = int(round(self.window / self.dt)) + 1
        self.n_in = 4 * self.n_fields + 1
        self.loss = FirstSpikeClassLoss(early, late)
        if self.loss.late > self.window:
            raise ValueError(f"late must lie inside window ({window} s), got {late}")
        features, labels = load_iris()
        self._low, self._high = features.min(0).values, features.max(0).values
        self._x = self.encode(features)
        self._labels = labels
        self.train_index, self.test_index = self._split(labels)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Raster ``[T, B, n_in]`` (float64) of measurements ``[B, 4]`` (cm), reference input last."""
        _checks.tensor("features", features, rank=2, shape=(None, 4))
        times = population_times(features.to(torch.float64), self._low, self._high, self.n_fields,
                                 self.code_window, self.dt, min_response=self.min_response)
        times = torch.cat([times, times.new_zeros(len(times), 1)], dim=1)
        return spike_raster(times, self.n_steps, self.dt)

    def _split(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        train, test = [], []
        for c in range(len(IRIS_CLASSES)):
            members = torch.nonzero(labels == c).flatten()
            members = members[torch.randperm(len(members), generator=self.generator)]
            half = len(members) // 2
            train.append(members[:half])
            test.append(members[half:])
        return torch.cat(train), torch.cat(test)

    def train_set(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole training half as one batch."""
        return self._x[:, self.train_index].to(dtype), self._labels[self.train_index]

    def test_set(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole test half as one batch."""
        return self._x[:, self.test_index].to(dtype), self._labels[self.test_index]

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        pick = self.train_index[torch.randint(len(self.train_index), (batch_size,), generator=self.generator)]
        return self._x[:, pick], self._labels[pick]
