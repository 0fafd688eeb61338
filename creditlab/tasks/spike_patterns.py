"""Classification of jittered spike patterns (after Maass, Natschläger & Markram 2002).

K template patterns are drawn once, at construction, from the task's
generator: each is ``n_in`` Poisson spike trains of ``duration`` seconds at
``rate`` Hz (a spike in each step with probability rate · dt).  A trial
picks a template uniformly and presents a noisy copy of it:

- every template spike is deleted with probability ``p_delete``;
- every kept spike moves by a Gaussian jitter of SD ``jitter`` seconds,
  rounded to the nearest step (spikes moved outside the trial are lost,
  two spikes landing in one step merge);
- extra spikes are added at ``noise_rate`` Hz in every channel.

Label: the template's index.  Loss: cross-entropy of the K outputs over the
last ``readout_window`` seconds of the trial (the readout at the end, as a
liquid-state machine is read out).
"""
from __future__ import annotations

import torch

from .. import _checks
from ..losses import WindowCrossEntropy
from .base import Task
from .encoders import poisson
from .temporal import _spike_probability, _steps


class SpikePatterns(Task):
    """Which of K frozen Poisson spike patterns is this jittered, thinned, noisy trial?"""

    name = "spike-patterns"
    kind = "classification"

    def __init__(self, n_templates: int = 4, n_in: int = 4, duration: float = 0.2, rate: float = 20.0,
                 jitter: float = 4e-3, p_delete: float = 0.1, noise_rate: float = 2.0,
                 readout_window: float = 0.01, dt: float = 1e-3, seed: int = 0) -> None:
        super().__init__(seed)
        self.n_templates = self.n_out = _checks.positive_int("n_templates", n_templates, minimum=2)
        self.n_in = _checks.positive_int("n_in", n_in)
        self.dt = _checks.positive("dt", dt)
        self.n_steps = _steps("duration", duration, self.dt)
        self.jitter_steps = _checks.non_negative("jitter", jitter) / self.dt
        self.p_delete = _checks.in_range("p_delete", p_delete, 0.0, 1.0)
        self.p_noise = _spike_probability("noise_rate", noise_rate, self.dt)
        window = _steps("readout_window", readout_window, self.dt)
        if window > self.n_steps:
            raise ValueError(f"readout_window must not exceed duration={duration} s, got {readout_window} s")
        self.loss = WindowCrossEntropy(window)
        p_template = _spike_probability("rate", rate, self.dt)
        self.templates = poisson(torch.full((self.n_templates, self.n_steps, self.n_in), p_template),
                                 generator=self.generator)

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        label = torch.randint(0, self.n_templates, (batch_size,), generator=self.generator)
        trial, step, channel = self.templates[label].nonzero(as_tuple=True)          # template spikes
        kept = torch.rand(trial.shape, generator=self.generator) >= self.p_delete
        shift = torch.randn(trial.shape, generator=self.generator) * self.jitter_steps
        moved = step + torch.round(shift).long()
        kept &= (moved >= 0) & (moved < self.n_steps)
        x = poisson(torch.full((self.n_steps, batch_size, self.n_in), self.p_noise), generator=self.generator)
        x[moved[kept], trial[kept], channel[kept]] = 1.0
        return x, label
