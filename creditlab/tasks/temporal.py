"""Temporal credit-assignment tasks, generated on the fly and seeded.

Each task draws every batch from its own ``torch.Generator`` (seeded by
``seed``), so a run is reproducible and resumable from ``task.state_dict()``.
Parts of a task that are frozen by definition (the pattern-generation target
and its input noise) are drawn from that generator once, at construction.

Times given in seconds are converted to steps of ``dt`` and must be whole
multiples of it; the discrete-time add task counts in steps.

- :class:`EvidenceAccumulation` — cue accumulation, Bellec et al. 2020.
- :class:`StoreRecall` — store/recall of one bit, Bellec et al. 2018.
- :class:`PatternGeneration` — a fixed sum of sinusoids from frozen noise, Bellec et al. 2020.
- :class:`DelayedResponse` — remember a cue over a variable delay, answer after a go cue.
- :class:`AddTask` — the lagged-bit regression of Marschall, Cho & Savin 2020.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .. import _checks
from ..losses import MSE, WindowCrossEntropy
from .base import Task
from .encoders import poisson


def _steps(name: str, seconds: float, dt: float, minimum: int = 1) -> int:
    """``seconds`` as a whole number of steps of ``dt`` (at least ``minimum``)."""
    seconds = _checks.non_negative(name, seconds)
    steps = round(seconds / dt)
    if abs(seconds / dt - steps) > 1e-6:
        raise ValueError(f"{name} must be a whole multiple of dt={dt} s, got {seconds} s")
    if steps < minimum:
        raise ValueError(f"{name} must last at least {minimum} step(s) of dt={dt} s, got {seconds} s")
    return steps


def _spike_probability(name: str, rate: float, dt: float) -> float:
    """``rate · dt`` for a rate in Hz, refusing more than one spike per step."""
    rate = _checks.non_negative(name, rate)
    if rate * dt > 1:
        raise ValueError(f"{name} · dt must be <= 1 (one spike per step at most); "
                         f"got {name}={rate} Hz with dt={dt} s")
    return rate * dt


def _channels(group_probabilities: torch.Tensor, channels_per_group: int) -> torch.Tensor:
    """Spread ``[T, B, G]`` group probabilities over ``channels_per_group`` channels each."""
    return group_probabilities.repeat_interleave(channels_per_group, dim=-1)


class EvidenceAccumulation(Task):
    """Cue accumulation (Bellec et al. 2020, Nat. Commun. 11:3625, Fig. 3).

    Input: four groups of ``channels_per_group`` Poisson channels — left cue,
    right cue, recall cue, background.  A trial of
    ``n_steps = n_cues·(cue_pause + cue_duration) + delay + recall_duration`` steps:

    - cue k (k = 0..n_cues−1) occupies steps
      ``[cue_pause + k·(cue_pause + cue_duration), (k+1)·(cue_pause + cue_duration))``;
      during it the channels of its side fire at ``rate``, the other side is silent;
    - after the last cue and ``delay``, the recall channels fire at ``rate``
      for the final ``recall_duration``;
    - background channels fire at ``background_rate`` throughout.

    Each trial first picks a favoured side uniformly; each cue lands on the
    other side with probability ``p_minority``.  Label: 1 if more cues were on
    the right, else 0 (``n_cues`` is odd, so there are no ties).  Loss:
    cross-entropy of the two outputs over the recall window.

    Defaults give Bellec's 40 channels, 7 cues and 2250 ms trials at dt = 1 ms;
    ``EvidenceAccumulation(n_cues=3, delay=0.1)`` is a 700-step variant.
    """

    name = "evidence"
    kind = "classification"

    def __init__(self, n_cues: int = 7, cue_duration: float = 0.1, cue_pause: float = 0.05,
                 delay: float = 1.05, recall_duration: float = 0.15, channels_per_group: int = 10,
                 rate: float = 40.0, background_rate: float = 10.0, p_minority: float = 0.3,
                 dt: float = 1e-3, seed: int = 0) -> None:
        super().__init__(seed)
        self.n_cues = _checks.positive_int("n_cues", n_cues)
        if n_cues % 2 == 0:
            raise ValueError(f"n_cues must be odd so that one side always has more cues, got {n_cues}")
        self.dt = _checks.positive("dt", dt)
        self.cue_steps = _steps("cue_duration", cue_duration, self.dt)
        self.pause_steps = _steps("cue_pause", cue_pause, self.dt, minimum=0)
        self.delay_steps = _steps("delay", delay, self.dt, minimum=0)
        self.recall_steps = _steps("recall_duration", recall_duration, self.dt)
        self.channels_per_group = _checks.positive_int("channels_per_group", channels_per_group)
        self.p_active = _spike_probability("rate", rate, self.dt)
        self.p_background = _spike_probability("background_rate", background_rate, self.dt)
        self.p_minority = _checks.in_range("p_minority", p_minority, 0.0, 0.5)
        self.n_in = 4 * self.channels_per_group
        self.n_out = 2
        self.n_steps = (self.n_cues * (self.pause_steps + self.cue_steps)
                        + self.delay_steps + self.recall_steps)
        self.loss = WindowCrossEntropy(self.recall_steps)

    def channel_group(self, group: str) -> slice:
        """Input channels of ``group``: "left", "right", "recall" or "background"."""
        index = ("left", "right", "recall", "background").index(
            _checks.choice("group", group, ("left", "right", "recall", "background")))
        return slice(index * self.channels_per_group, (index + 1) * self.channels_per_group)

    def cue_window(self, k: int) -> slice:
        """Steps during which cue ``k`` is shown."""
        _checks.positive_int("k", k, minimum=0)
        if k >= self.n_cues:
            raise ValueError(f"k must be < n_cues={self.n_cues}, got {k}")
        start = self.pause_steps + k * (self.pause_steps + self.cue_steps)
        return slice(start, start + self.cue_steps)

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        favoured = torch.randint(0, 2, (batch_size, 1), generator=self.generator)
        minority = torch.rand(batch_size, self.n_cues, generator=self.generator) < self.p_minority
        side = favoured ^ minority.long()                                     # [B, n_cues], 1 = right
        label = (side.sum(1) > self.n_cues // 2).long()
        groups = torch.zeros(self.n_steps, batch_size, 4)
        cue_side = F.one_hot(side, 2).float() * self.p_active   # [B, n_cues, 2]
        for k in range(self.n_cues):
            groups[self.cue_window(k), :, :2] = cue_side[:, k]
        groups[self.n_steps - self.recall_steps:, :, 2] = self.p_active
        groups[:, :, 3] = self.p_background
        x = poisson(_channels(groups, self.channels_per_group), generator=self.generator)
        return x, label


class StoreRecall(Task):
    """Store and recall one bit (after Bellec et al. 2018, NeurIPS, "STORE-RECALL").

    Input: four groups of ``channels_per_group`` Poisson channels — store
    command, recall command, value 0, value 1.  A trial is ``n_periods``
    periods of ``period`` seconds each:

    - periods 0..n_periods−2 each show a random bit b_k: the "value b_k"
      channels fire at ``rate`` for the whole period;
    - period 0 is always a store period, periods 1..n_periods−2 are store
      periods independently with probability ``p_store``: the store channels
      fire at ``rate`` alongside the value;
    - the last period is the recall: the recall channels fire, the value
      channels are silent.

    Label: the bit shown at the last store command.  Loss: cross-entropy of
    the two outputs over the recall period (the last ``period``), so only the
    recall window is scored.  Labels are balanced: every bit is a fair coin.
    """

    name = "store-recall"
    kind = "classification"

    def __init__(self, n_periods: int = 10, period: float = 0.2, p_store: float = 0.2,
                 channels_per_group: int = 10, rate: float = 50.0, dt: float = 1e-3,
                 seed: int = 0) -> None:
        super().__init__(seed)
        self.n_periods = _checks.positive_int("n_periods", n_periods, minimum=2)
        self.dt = _checks.positive("dt", dt)
        self.period_steps = _steps("period", period, self.dt)
        self.p_store = _checks.in_range("p_store", p_store, 0.0, 1.0)
        self.channels_per_group = _checks.positive_int("channels_per_group", channels_per_group)
        self.p_active = _spike_probability("rate", rate, self.dt)
        self.n_in = 4 * self.channels_per_group
        self.n_out = 2
        self.n_steps = self.n_periods * self.period_steps
        self.loss = WindowCrossEntropy(self.period_steps)

    def channel_group(self, group: str) -> slice:
        """Input channels of ``group``: "store", "recall", "value0" or "value1"."""
        index = ("store", "recall", "value0", "value1").index(
            _checks.choice("group", group, ("store", "recall", "value0", "value1")))
        return slice(index * self.channels_per_group, (index + 1) * self.channels_per_group)

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_shown = self.n_periods - 1
        bits = torch.randint(0, 2, (batch_size, n_shown), generator=self.generator)
        store = torch.rand(batch_size, n_shown, generator=self.generator) < self.p_store
        store[:, 0] = True
        last_store = (store.long() * torch.arange(n_shown)).argmax(1)
        label = bits.gather(1, last_store[:, None]).squeeze(1)
        groups = torch.zeros(self.n_periods, batch_size, 4)
        groups[:n_shown, :, 0] = store.T.float() * self.p_active
        groups[:n_shown, :, 2:] = F.one_hot(bits, 2).transpose(0, 1).float() * self.p_active
        groups[n_shown, :, 1] = self.p_active
        per_step = groups.repeat_interleave(self.period_steps, dim=0)
        x = poisson(_channels(per_step, self.channels_per_group), generator=self.generator)
        return x, label


def _positive_numbers(name: str, values: Sequence[float]) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise TypeError(f"{name} must be a non-empty sequence of numbers > 0, got {values!r}")
    return tuple(_checks.positive(f"{name}[{i}]", v) for i, v in enumerate(values))


class PatternGeneration(Task):
    """Reproduce a fixed 1 s pattern from frozen input noise (Bellec et al. 2020, Fig. 2).

    Target, for output o and step t (time t·dt):

        y_o(t) = Σ_k A_ok · sin(2π f_k t·dt + φ_ok),   f = ``frequencies`` (1, 2, 3, 5 Hz),

    with amplitudes A_ok ~ U(``amplitude_range``) and phases φ_ok ~ U[0, 2π).
    Input: ``n_in`` Poisson channels at ``rate`` Hz.  Both the target and the
    input spikes are drawn once at construction — frozen for the task's seed —
    and every batch repeats that same trial.  Loss: mean squared error.
    """

    name = "pattern"
    kind = "regression"

    def __init__(self, n_in: int = 100, n_out: int = 1, duration: float = 1.0,
                 frequencies: Sequence[float] = (1.0, 2.0, 3.0, 5.0),
                 amplitude_range: tuple[float, float] = (0.5, 2.0), rate: float = 50.0,
                 dt: float = 1e-3, seed: int = 0) -> None:
        super().__init__(seed)
        self.n_in = _checks.positive_int("n_in", n_in)
        self.n_out = _checks.positive_int("n_out", n_out)
        self.dt = _checks.positive("dt", dt)
        self.n_steps = _steps("duration", duration, self.dt)
        self.frequencies = _positive_numbers("frequencies", frequencies)
        nyquist = 0.5 / self.dt
        if max(self.frequencies) >= nyquist:
            raise ValueError(f"frequencies must be below the Nyquist frequency 1/(2·dt)={nyquist} Hz, "
                             f"got {max(self.frequencies)} Hz")
        low, high = self._amplitude_range(amplitude_range)
        p_in = _spike_probability("rate", rate, self.dt)
        self.loss = MSE()
        self.amplitudes = low + (high - low) * torch.rand(self.n_out, len(self.frequencies),
                                                          generator=self.generator)
        self.phases = 2 * math.pi * torch.rand(self.n_out, len(self.frequencies), generator=self.generator)
        self.input = poisson(torch.full((self.n_steps, 1, self.n_in), p_in), generator=self.generator)
        self.target = self._pattern()

    @staticmethod
    def _amplitude_range(amplitude_range: tuple[float, float]) -> tuple[float, float]:
        if not isinstance(amplitude_range, (tuple, list)) or len(amplitude_range) != 2:
            raise TypeError(f"amplitude_range must be a pair (low, high), got {amplitude_range!r}")
        low = _checks.non_negative("amplitude_range[0]", amplitude_range[0])
        high = _checks.non_negative("amplitude_range[1]", amplitude_range[1])
        if high < low:
            raise ValueError(f"amplitude_range must have low <= high, got {amplitude_range!r}")
        return low, high

    def _pattern(self) -> torch.Tensor:
        """The target ``[T, 1, n_out]`` from the frozen amplitudes and phases."""
        t = torch.arange(self.n_steps, dtype=torch.float64) * self.dt
        freq = torch.tensor(self.frequencies, dtype=torch.float64)
        angle = 2 * math.pi * freq * t[:, None, None] + self.phases.double()        # [T, n_out, K]
        return (self.amplitudes.double() * torch.sin(angle)).sum(-1).float().unsqueeze(1)

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.input.expand(-1, batch_size, -1).clone(),
                self.target.expand(-1, batch_size, -1).clone())


class DelayedResponse(Task):
    """Hold a cue over a variable delay and answer with a timed bump after a go cue.

    An interval-timing / delayed-response task in the style of Murray 2019
    (eLife 8:e43299).  Inputs (analog pulses of height 1, three channels):
    cue A, cue B, go.  In each trial

    - one cue, A or B with equal probability, is on for ``pulse_duration``
      from ``cue_onset``;
    - after a delay D ~ uniform over the whole steps in [``min_delay``, ``max_delay``]
      (from cue offset), the go channel is on for ``pulse_duration``, from t_go;
    - target (one output): y(t) = s · exp(−(t − t_go − L)² / (2σ²)), with s = +1
      after cue A and −1 after cue B, L = ``response_latency``, σ = ``response_width``.

    The trial lasts cue_onset + pulse_duration + max_delay + L + ⌈4σ⌉ + 1 steps,
    so the latest bump is complete.  Durations are in seconds, σ in seconds too.  Loss: mean squared error over the trial.
    Spiking inputs, where wanted, come from :func:`creditlab.tasks.encoders.poisson`.
    """

    name = "delayed-response"
    kind = "regression"

    def __init__(self, cue_onset: float = 0.01, pulse_duration: float = 0.01,
                 min_delay: float = 0.02, max_delay: float = 0.1, response_latency: float = 0.03,
                 response_width: float = 0.005, dt: float = 1e-3, seed: int = 0) -> None:
        super().__init__(seed)
        self.dt = _checks.positive("dt", dt)
        self.onset_steps = _steps("cue_onset", cue_onset, self.dt, minimum=0)
        self.pulse_steps = _steps("pulse_duration", pulse_duration, self.dt)
        self.min_delay_steps = _steps("min_delay", min_delay, self.dt, minimum=0)
        self.max_delay_steps = _steps("max_delay", max_delay, self.dt, minimum=0)
        if self.max_delay_steps < self.min_delay_steps:
            raise ValueError(f"max_delay must be >= min_delay, got min_delay={min_delay}, max_delay={max_delay}")
        self.latency_steps = _steps("response_latency", response_latency, self.dt, minimum=0)
        self.width_steps = _checks.positive("response_width", response_width) / self.dt
        self.n_in = 3
        self.n_out = 1
        self.n_steps = (self.onset_steps + self.pulse_steps + self.max_delay_steps
                        + self.latency_steps + math.ceil(4 * self.width_steps) + 1)
        self.loss = MSE()

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        cue = torch.randint(0, 2, (batch_size,), generator=self.generator)
        delay = torch.randint(self.min_delay_steps, self.max_delay_steps + 1, (batch_size,),
                              generator=self.generator)
        t = torch.arange(self.n_steps)[:, None]                                  # [T, 1]
        cue_on = (t >= self.onset_steps) & (t < self.onset_steps + self.pulse_steps)
        t_go = self.onset_steps + self.pulse_steps + delay                       # [B]
        go_on = (t >= t_go) & (t < t_go + self.pulse_steps)
        x = torch.zeros(self.n_steps, batch_size, self.n_in)
        x[:, :, :2] = cue_on[:, :, None] * F.one_hot(cue, 2)
        x[:, :, 2] = go_on.float()
        sign = 1.0 - 2.0 * cue.float()
        bump = torch.exp(-(t - t_go - self.latency_steps).float() ** 2 / (2 * self.width_steps ** 2))
        return x, (sign * bump).unsqueeze(-1)


class AddTask(Task):
    """Lagged-bit regression (Marschall, Cho & Savin 2020, JMLR 21:135, "Add" task).

    Input: an i.i.d. bit stream x(t) ~ Bernoulli(0.5).  Target:

        y(t) = 0.5 + 0.5·x(t − t1) − 0.25·x(t − t2),   x(t) = 0 for t < 0

    (each batch is a fresh stream that starts from silence).  Lags are in steps.
    ``one_hot=False``: one input x and one output y.  ``one_hot=True``, as in
    Marschall et al.: inputs (x, 1 − x) and outputs (y, 1 − y).  Loss: mean
    squared error.
    """

    name = "add"
    kind = "regression"

    def __init__(self, n_steps: int = 200, t1: int = 5, t2: int = 9, one_hot: bool = False,
                 dt: float = 1e-3, seed: int = 0) -> None:
        super().__init__(seed)
        self.n_steps = _checks.positive_int("n_steps", n_steps)
        self.t1 = _checks.positive_int("t1", t1, minimum=0)
        self.t2 = _checks.positive_int("t2", t2, minimum=0)
        if not isinstance(one_hot, bool):
            raise TypeError(f"one_hot must be a bool, got {type(one_hot).__name__}")
        self.one_hot = one_hot
        self.dt = _checks.positive("dt", dt)
        self.n_in = self.n_out = 2 if one_hot else 1
        self.loss = MSE()

    def _lagged(self, bits: torch.Tensor, lag: int) -> torch.Tensor:
        """x(t − lag) with zeros before the stream starts, for bits ``[T, B]``."""
        lagged = torch.zeros_like(bits)
        if lag < self.n_steps:
            lagged[lag:] = bits[:self.n_steps - lag]
        return lagged

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        bits = torch.randint(0, 2, (self.n_steps, batch_size), generator=self.generator).float()
        y = 0.5 + 0.5 * self._lagged(bits, self.t1) - 0.25 * self._lagged(bits, self.t2)
        if self.one_hot:
            return torch.stack((bits, 1 - bits), -1), torch.stack((y, 1 - y), -1)
        return bits.unsqueeze(-1), y.unsqueeze(-1)
