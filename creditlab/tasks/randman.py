"""Random-manifold spike-timing classification (Zenke & Vogels 2021, Neural Comput. 33:899).

Each class c owns a smooth random manifold of intrinsic dimension D
(``dim_manifold``) embedded in ``n_in`` dimensions.  Embedding coordinate u of
the manifold at intrinsic point ξ ∈ [0, 1]^D is a product over intrinsic
dimensions of random Fourier series with a power-law spectrum:

    f_u(ξ) = Π_{d=1..D} Σ_{i=0..F−1} θ⁰_{udi} · s_i · sin(2π (i · ξ_d · θ¹_{udi} + θ²_{udi})),
    s_i = 1 / (i + 1)^α,   θ ~ U[0, 1],   θ⁰_{ud0} = 0 (no constant offset),
    F = min(⌈prec^{−1/α}⌉, max_f_cutoff).

α sets the smoothness.  A sample of class c draws ξ ~ U[0, 1]^D and turns
each coordinate into one spike of input unit u:

    t_u = round(g_u(f_u(ξ)) · (S − 1)),   S = ⌊step_frac · n_steps⌋ spike steps,

where g_u min–max scales f_u to [0, 1].  Zenke's generator scales by the
minimum and maximum over the drawn data set; here a generator of endless
batches takes them over ``n_reference`` points drawn once at construction,
and clips the rare sample outside them.  With ``n_spikes`` > 1 each class has
that many independent manifolds over the same ξ, one spike from each, and a
bin holds the spike count.  Only spike timing carries the class: every unit
fires exactly ``n_spikes`` times in every sample.

Loss: cross-entropy over the last ``window`` steps, by default the silent
tail after the spike window (n_steps − S); Zenke's generator spreads spikes
over the whole trial (step_frac = 1), the default 0.8 here leaves that tail
for the readout.
"""
from __future__ import annotations

import math

import torch

from .. import _checks
from ..losses import WindowCrossEntropy
from .base import Task
from .encoders import spike_raster


class Randman(Task):
    """Classify which random manifold a single-spike-per-unit input pattern comes from."""

    name = "randman"
    kind = "classification"

    def __init__(self, n_classes: int = 10, n_in: int = 100, dim_manifold: int = 1,
                 n_steps: int = 100, alpha: float = 2.0, n_spikes: int = 1, step_frac: float = 0.8,
                 window: int | None = None, prec: float = 1e-3, max_f_cutoff: int = 1000,
                 n_reference: int = 1000, dt: float = 1e-3, seed: int = 0) -> None:
        super().__init__(seed)
        self.n_classes = _checks.positive_int("n_classes", n_classes, minimum=2)
        self.n_in = _checks.positive_int("n_in", n_in)
        self.dim_manifold = _checks.positive_int("dim_manifold", dim_manifold)
        self.n_steps = _checks.positive_int("n_steps", n_steps)
        self.alpha = _checks.positive("alpha", alpha)
        self.n_spikes = _checks.positive_int("n_spikes", n_spikes)
        self.step_frac = _checks.in_range("step_frac", step_frac, 0.0, 1.0)
        self.spike_steps = math.floor(self.step_frac * self.n_steps)
        if self.spike_steps < 1:
            raise ValueError(f"step_frac · n_steps must be at least one step, got "
                             f"step_frac={step_frac}, n_steps={n_steps}")
        if window is None:
            window = max(self.n_steps - self.spike_steps, 1)
        self.window = _checks.positive_int("window", window)
        if self.window > self.n_steps:
            raise ValueError(f"window must be <= n_steps={self.n_steps}, got {window}")
        prec = _checks.in_range("prec", prec, 0.0, 1.0)
        if prec in (0.0, 1.0):
            raise ValueError(f"prec must be strictly between 0 and 1, got {prec}")
        max_f_cutoff = _checks.positive_int("max_f_cutoff", max_f_cutoff)
        self.f_cutoff = min(math.ceil(prec ** (-1.0 / self.alpha)), max_f_cutoff)
        self.n_reference = _checks.positive_int("n_reference", n_reference, minimum=2)
        self.dt = _checks.positive("dt", dt)
        self.n_out = self.n_classes
        self.loss = WindowCrossEntropy(self.window)

        self.spectrum = 1.0 / (torch.arange(self.f_cutoff, dtype=torch.float64) + 1) ** self.alpha
        # θ: [class, manifold, unit, intrinsic dim, (θ⁰, θ¹, θ²), frequency]
        self.params = torch.rand(self.n_classes, self.n_spikes, self.n_in, self.dim_manifold, 3,
                                 self.f_cutoff, generator=self.generator, dtype=torch.float64)
        self.params[..., 0, 0] = 0.0
        reference = torch.rand(self.n_reference, self.dim_manifold, generator=self.generator,
                               dtype=torch.float64)
        low, high = [], []
        for c in range(self.n_classes):
            values = self.embed(reference, torch.full((self.n_reference,), c))
            low.append(values.amin(0))
            high.append(values.amax(0))
        self.low = torch.stack(low)              # [class, manifold, unit]
        self.high = torch.stack(high)

    def _check_points(self, coords: torch.Tensor, labels: torch.Tensor) -> None:
        _checks.tensor("coords", coords, rank=2, shape=(None, self.dim_manifold))
        if coords.numel() and (float(coords.min()) < 0 or float(coords.max()) > 1):
            raise ValueError(f"coords must lie in [0, 1]^{self.dim_manifold}, got values in "
                             f"[{float(coords.min())}, {float(coords.max())}]")
        _checks.tensor("labels", labels, rank=1, shape=(coords.shape[0],))
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError(f"labels must lie in 0..{self.n_classes - 1}")

    def embed(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """f(ξ) of each point's class manifold(s): ``[B, n_spikes, n_in]`` (float64).

        ``coords`` ``[B, dim_manifold]`` are intrinsic points in [0, 1]^D, ``labels`` ``[B]`` classes.
        """
        self._check_points(coords, labels)
        theta = self.params[labels]                                   # [B, M, U, D, 3, F]
        i = torch.arange(self.f_cutoff, dtype=torch.float64)
        xi = coords.double()[:, None, None, :, None]                  # [B, 1, 1, D, 1]
        phase = 2 * math.pi * (i * xi * theta[..., 1, :] + theta[..., 2, :])
        series = (theta[..., 0, :] * self.spectrum * torch.sin(phase)).sum(-1)   # [B, M, U, D]
        return series.prod(-1)

    def spike_times(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Spike step of each unit from each manifold: ``[B, n_spikes, n_in]`` in 0..S−1."""
        values = self.embed(coords, labels)
        low, high = self.low[labels], self.high[labels]
        scaled = ((values - low) / (high - low + 1e-7)).clamp(0.0, 1.0)
        return torch.round(scaled * (self.spike_steps - 1))

    def encode(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Spike counts ``[n_steps, B, n_in]`` for intrinsic points of the given classes."""
        times = self.spike_times(coords, labels).float()
        return spike_raster(times, self.n_steps).sum(2)

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, self.n_classes, (batch_size,), generator=self.generator)
        coords = torch.rand(batch_size, self.dim_manifold, generator=self.generator, dtype=torch.float64)
        return self.encode(coords, labels), labels
