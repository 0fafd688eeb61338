"""Classic single-step tasks: the two spirals and Zipser & Andersen's coordinate transform.

Both are feed-forward problems, so a sample is one time step: ``x [1, B, n_in]``.

TwoSpiral (Lang & Witbrock 1988, "Learning to tell two spirals apart")
    The CMU benchmark set: for spiral point i = 0 … 96·density,

        φ_i = i π / (16·density),   r_i = 6.5 (104·density − i) / (104·density),
        class 0: ( r_i sin φ_i,  r_i cos φ_i),   class 1: the point reflected through the origin,

    194 points at density 1, three turns each.  ``points()`` returns the
    whole fixed set (train on it; "training accuracy" is measured on it);
    ``sample`` draws batches from it with replacement.  Scored with
    cross-entropy on two output logits.

ZipserAndersen (Zipser & Andersen 1988, Nature 331:679)
    Transform a retinal position r (2-D, degrees) and an eye position e into
    the head-centred position h = r + e.

    - retina: 8 × 8 Gaussian units, exp(−‖r − c‖² / 2σ²), σ = 15°, centres
      10° apart at −35°, −25°, …, 35° on each axis (the grid covers ±40°);
    - eye position: 32 monotonic units, 16 per axis — 8 with positive and
      8 with negative slope, rectified ramps clip(±(e − k)/40° , 0, 1)
      with thresholds k = −17.5°, −12.5°, …, 17.5° spread over ±20°;
    - output: the head-centred position on the same 8 × 8 Gaussian map.

    Positions are drawn uniformly with |r| ≤ 40°, |e| ≤ 20° per axis and
    kept when |h| ≤ 40° (so the target lies on the output map).  Scored with
    mean squared error on the map; ``position_error`` decodes the map by
    template matching (1° grid, refined to 0.1°) and reports the mean Euclidean error in
    degrees.  Zipser & Andersen used a sigmoid hidden layer trained by
    backprop, whose units develop eye-position gain fields.
"""
from __future__ import annotations

import math

import torch

from .. import _checks
from ..losses import MSE, WindowCrossEntropy
from .base import Task

RETINA_CENTRES = tuple(-35.0 + 10.0 * i for i in range(8))
RETINA_SIGMA = 15.0
EYE_THRESHOLDS = tuple(-17.5 + 5.0 * i for i in range(8))
EYE_RAMP_WIDTH = 40.0
RETINA_RANGE = 40.0
EYE_RANGE = 20.0
#: rows decoded at once (bounds the [rows, templates, 64] distance tensor)
DECODE_CHUNK = 256


def two_spirals(density: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Lang & Witbrock's two spirals: points ``[2·(96·density + 1), 2]`` (float64) and labels."""
    density = _checks.positive_int("density", density)
    i = torch.arange(96 * density + 1, dtype=torch.float64)
    phi = i * math.pi / (16 * density)
    radius = 6.5 * (104 * density - i) / (104 * density)
    first = torch.stack([radius * torch.sin(phi), radius * torch.cos(phi)], dim=1)
    points = torch.cat([first, -first])
    labels = torch.cat([torch.zeros(len(i), dtype=torch.long), torch.ones(len(i), dtype=torch.long)])
    return points, labels


class TwoSpiral(Task):
    """Two-spiral classification: ``x [1, B, 2]`` → label ``[B]`` (0 or 1)."""

    name = "spiral"
    kind = "classification"
    n_in = 2
    n_out = 2
    n_steps = 1
    dt = 1e-3

    def __init__(self, density: int = 1, seed: int = 0) -> None:
        super().__init__(seed)
        self.density = _checks.positive_int("density", density)
        self._points, self._labels = two_spirals(self.density)
        self.loss = WindowCrossEntropy(window=1)

    def points(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole benchmark set as one batch: ``x [1, N, 2]`` and labels ``[N]``."""
        return self._points.to(dtype)[None], self._labels.clone()

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(self._labels), (batch_size,), generator=self.generator)
        return self._points[index][None], self._labels[index]


def gaussian_map(position: torch.Tensor) -> torch.Tensor:
    """8 × 8 Gaussian population code of ``position [B, 2]`` (degrees) → ``[B, 64]`` (row = vertical)."""
    centres = torch.tensor(RETINA_CENTRES, dtype=position.dtype, device=position.device)
    gx = torch.exp(-(position[:, :1] - centres) ** 2 / (2 * RETINA_SIGMA ** 2))
    gy = torch.exp(-(position[:, 1:] - centres) ** 2 / (2 * RETINA_SIGMA ** 2))
    return (gy[:, :, None] * gx[:, None, :]).reshape(position.shape[0], 64)


def eye_position_code(eye: torch.Tensor) -> torch.Tensor:
    """32 rectified ramps of ``eye [B, 2]``: per axis 8 positive- then 8 negative-slope units → ``[B, 32]``."""
    thresholds = torch.tensor(EYE_THRESHOLDS, dtype=eye.dtype, device=eye.device)
    units = []
    for axis in range(2):
        offset = (eye[:, axis:axis + 1] - thresholds) / EYE_RAMP_WIDTH
        units += [offset.clamp(0.0, 1.0), (-offset).clamp(0.0, 1.0)]
    return torch.cat(units, dim=1)


class ZipserAndersen(Task):
    """Retinal + eye position → head-centred position: ``x [1, B, 96]`` → map ``[1, B, 64]``."""

    name = "zipser-andersen"
    kind = "regression"
    n_in = 96
    n_out = 64
    n_steps = 1
    dt = 1e-3

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.loss = MSE()
        coarse = torch.arange(-RETINA_RANGE, RETINA_RANGE + 0.5, 1.0, dtype=torch.float64)
        fine = torch.arange(-0.6, 0.65, 0.1, dtype=torch.float64)
        self._coarse_positions = torch.cartesian_prod(coarse, coarse)
        self._coarse_templates = gaussian_map(self._coarse_positions)
        self._fine_offsets = torch.cartesian_prod(fine, fine)

    def sample_positions(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Retinal and eye positions ``[B, 2]`` (degrees) with the head-centred sum on the map."""
        _checks.positive_int("batch_size", batch_size)
        retinal, eye = [], []
        have = 0
        while have < batch_size:
            r = (torch.rand(2 * batch_size, 2, generator=self.generator, dtype=torch.float64) * 2 - 1) * RETINA_RANGE
            e = (torch.rand(2 * batch_size, 2, generator=self.generator, dtype=torch.float64) * 2 - 1) * EYE_RANGE
            keep = ((r + e).abs() <= RETINA_RANGE).all(dim=1)
            retinal.append(r[keep])
            eye.append(e[keep])
            have += int(keep.sum())
        return torch.cat(retinal)[:batch_size], torch.cat(eye)[:batch_size]

    @staticmethod
    def encode(retinal: torch.Tensor, eye: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network input ``[B, 96]`` (retina then eye units) and target map ``[B, 64]``."""
        x = torch.cat([gaussian_map(retinal), eye_position_code(eye)], dim=1)
        return x, gaussian_map(retinal + eye)

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, target = self.encode(*self.sample_positions(batch_size))
        return x[None], target[None]

    @torch.no_grad()
    def decode(self, maps: torch.Tensor) -> torch.Tensor:
        """Head-centred position ``[..., 2]`` whose Gaussian map best matches ``maps [..., 64]``.

        Template matching in least squares: the best point of a 1° grid over
        ±40°, then of a 0.1° grid within ±0.6° of it.
        """
        flat = maps.reshape(-1, 64).to(torch.float64)
        decoded = torch.cat([self._decode_chunk(chunk) for chunk in flat.split(DECODE_CHUNK)]) \
            if flat.shape[0] else flat.new_zeros(0, 2)
        return decoded.reshape(*maps.shape[:-1], 2)

    def _decode_chunk(self, flat: torch.Tensor) -> torch.Tensor:
        positions = self._coarse_positions.to(flat.device)
        templates = self._coarse_templates.to(flat.device)
        # ‖m − T‖² up to the row constant ‖m‖²: one matmul over the coarse grid
        coarse = positions[((templates ** 2).sum(1) - 2 * flat @ templates.T).argmin(dim=1)]
        candidates = coarse[:, None, :] + self._fine_offsets.to(flat.device)[None]
        fine = gaussian_map(candidates.reshape(-1, 2)).reshape(*candidates.shape[:2], 64)
        index = ((flat[:, None, :] - fine) ** 2).sum(-1).argmin(dim=1)
        return candidates[torch.arange(flat.shape[0]), index]

    @torch.no_grad()
    def position_error(self, outputs: torch.Tensor, target: torch.Tensor) -> float:
        """Mean Euclidean distance (degrees) between decoded output and target positions."""
        return float((self.decode(outputs) - self.decode(target)).norm(dim=-1).mean())

    def metrics(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        out = super().metrics(outputs, target)
        out["position_error"] = self.position_error(outputs, target)
        return out
