"""Delayed non-match-to-sample (Miconi 2017, eLife 6:e20899, Figure 1).

Two stimuli, each A or B, arrive one after the other on two input channels
(A on channel 0, B on channel 1), separated by a delay; after a second
delay the network must answer during a response window: +1 when the
stimuli differ (AB, BA: non-match), −1 when they are the same (AA, BB).
Miconi's timeline at dt = 1 ms, 1000 ms in all:

    stimulus 1   [0, 200) ms      delay   [200, 400) ms
    stimulus 2   [400, 600) ms    delay   [600, 800) ms
    response     [800, 1000) ms

A trial's error is the mean absolute difference between output and target
over the response window (Miconi's "trial error"); the loss is that error
averaged over trials.  Miconi (Figure 1B of the paper) counts a trial
correct when its error is below 1 (the sign of the answer is right on
average) and his criterion is 95 % correct trials over 100 successive
trials (the README of his code quotes the stricter "95 % of errors < .5").
"""
from __future__ import annotations

import torch

from .. import _checks
from ..losses import TimeLocalLoss
from .base import Task

#: the four stimulus pairs, as (first, second) with 0 = A and 1 = B
PAIRS = ((0, 0), (0, 1), (1, 0), (1, 1))


class WindowAbsoluteError(TimeLocalLoss):
    """L = mean over the last ``window`` steps, trials and outputs of |y_t − target_t|."""

    name = "window_mae"

    def __init__(self, window: int) -> None:
        self.window = _checks.positive_int("window", window)

    def _start(self, n_steps: int) -> int:
        return max(n_steps - self.window, 0)

    def __call__(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        start = self._start(outputs.shape[0])
        return (outputs[start:] - target[start:]).abs().mean()

    def trial_errors(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each trial's error ``[B]``: mean |y − target| over the window and outputs."""
        start = self._start(outputs.shape[0])
        return (outputs[start:] - target[start:]).abs().mean(dim=(0, 2))

    def output_error(self, t: int, n_steps: int, y_t: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        start = self._start(n_steps)
        if t < start:
            return torch.zeros_like(y_t)
        return torch.sign(y_t - target[t]) / ((n_steps - start) * y_t.numel())

    def check_target(self, outputs_shape: tuple[int, ...], target: torch.Tensor) -> None:
        _checks.tensor("target", target, rank=len(outputs_shape), shape=outputs_shape)
        if not target.is_floating_point():
            raise TypeError(f"target must be a floating-point tensor, got dtype {target.dtype}")


class DelayedNonMatch(Task):
    """Miconi's delayed non-match-to-sample task (times in seconds).

    ``amplitude`` is the target magnitude (Miconi's code uses 0.98 so that a
    tanh output neuron can reach it); ``correct_below`` the trial error under
    which a trial counts as correct.
    """

    name = "dnms"
    n_in = 2
    n_out = 1
    kind = "regression"

    def __init__(self, dt: float = 1e-3, stimulus: float = 0.2, delay: float = 0.2,
                 response_delay: float = 0.2, response: float = 0.2, amplitude: float = 1.0,
                 correct_below: float = 1.0, seed: int = 0) -> None:
        super().__init__(seed)
        self.dt = _checks.positive("dt", dt)
        steps = {}
        for name, value in (("stimulus", stimulus), ("delay", delay),
                            ("response_delay", response_delay), ("response", response)):
            seconds = _checks.non_negative(name, value)
            steps[name] = int(round(seconds / self.dt))
        if steps["stimulus"] < 1 or steps["response"] < 1:
            raise ValueError(f"stimulus and response must last at least one step of dt={dt}, "
                             f"got stimulus={stimulus}, response={response}")
        self.stim_steps, self.delay_steps = steps["stimulus"], steps["delay"]
        self.response_delay_steps, self.response_steps = steps["response_delay"], steps["response"]
        self.second_start = self.stim_steps + self.delay_steps
        self.n_steps = (self.second_start + self.stim_steps + self.response_delay_steps + self.response_steps)
        self.amplitude = _checks.positive("amplitude", amplitude)
        self.correct_below = _checks.positive("correct_below", correct_below)
        self.loss = WindowAbsoluteError(self.response_steps)

    def _generate(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = torch.randint(0, len(PAIRS), (batch_size,), generator=self.generator)
        first, second = pair // 2, pair % 2
        x = torch.zeros(self.n_steps, batch_size, self.n_in)
        rows = torch.arange(batch_size)
        x[:self.stim_steps, rows, first] = 1.0
        x[self.second_start:self.second_start + self.stim_steps, rows, second] = 1.0
        answer = torch.where(first != second, 1.0, -1.0) * self.amplitude
        y = answer.view(1, batch_size, 1).expand(self.n_steps, batch_size, 1).clone()
        return x, y

    def trial_type(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Stimulus pair of each trial ``[B]``: 0 = AA, 1 = AB, 2 = BA, 3 = BB."""
        first = x[0].argmax(-1)
        second = x[self.second_start].argmax(-1)
        return 2 * first + second

    @torch.no_grad()
    def metrics(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Loss, mean trial error and the fraction of correct trials (error < ``correct_below``)."""
        errors = self.loss.trial_errors(outputs, target)
        return {"loss": float(self.loss(outputs, target)), "error": float(errors.mean()),
                "accuracy": float((errors < self.correct_below).float().mean())}
