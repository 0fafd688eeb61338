"""Unsupervised STDP network of Diehl & Cook (2015, Front. Comput. Neurosci. 9:99).

"Unsupervised learning of digit recognition using spike-timing-dependent
plasticity".  Poisson-coded images drive N excitatory conductance-based LIF
neurons through plastic weights W [N, n_in]; every excitatory spike inhibits
all other excitatory neurons (winner-take-all), adaptive thresholds θ keep any
one neuron from winning every image, and each neuron's incoming weights learn
a prototype by the presynaptic-trace STDP rule.

Neuron i (paper eqs. 1–2), time in s, voltages in mV, conductances unitless::

    τ dv_i/dt  = (E_rest − v_i) + g_e,i (E_exc − v_i) + g_i,i (E_inh − v_i)
    τ_ge dg_e,i/dt = −g_e,i,   g_e,i += W_ij        on an input spike of pixel j
    τ_gi dg_i,i/dt = −g_i,i,   g_i,i += w_inh       on a spike of any other excitatory k ≠ i
    spike when v_i > v_thresh + θ_i  →  v_i ← v_reset, no integration for t_ref
    τ_θ dθ_i/dt = −θ_i,        θ_i += θ_+           on each spike of i   (training only)

Learning (paper eq. 3, the presynaptic-trace rule), on a spike of neuron i::

    τ_pre dx_j/dt = −x_j,   x_j += 1 on each input spike of pixel j
    W_ij ← clip(W_ij + η (x_j − x_tar) (w_max − W_ij)^μ, 0, w_max)

and before every presentation each neuron's incoming weights are rescaled to
a fixed total, W_ij ← W_ij · c / Σ_j W_ij (c = 78 for 784 inputs, paper §2.3).

Input: pixel intensity p ∈ [0, 1] fires at rate p · r_max (r_max = 63.75 Hz)
for 350 ms, followed by 150 ms of rest; if the excitatory layer fires fewer
than 5 spikes, the image is shown again with r_max raised by 32 Hz (the
paper's code scales all rates by (k + 2)/2 on retry k, i.e. +31.875 Hz).
After training, weights and θ are frozen, each neuron is labelled with the
class for which its mean spike count over the training images is highest,
and a test image is assigned the class whose neurons have the highest mean
spike count (paper §2.5).

Discretisation and simplifications (documented deviations from the paper):

- One step of length dt: conductances decay exactly (× e^{−dt/τ}) and then
  receive this step's increments; v takes a forward-Euler step; the spike
  test follows.  A pre spike in the step of a post spike counts as arriving
  first (x_j already includes it), the convention of ``rules/stdp.py``.
- Lateral inhibition is a direct inhibitory conductance, not a separate
  inhibitory population: the paper's 1-to-1 excitatory→inhibitory synapses
  (w = 10.4) make each inhibitory neuron fire once per spike of its partner,
  which then inhibits all other excitatory neurons (w = 17).  Here a spike
  at step n raises g_i of every other excitatory neuron by w_inh at step
  n + 1, dropping the inhibitory neurons' own 1–2 ms integration delay.
- The 150 ms rest is a return to rest: every presentation starts from
  v = E_rest, g = 0, x = 0 (the paper's v relaxes with τ = 100 ms, so it
  keeps e^{−1.5} ≈ 22 % of its deviation from rest); θ, which decays with
  τ_θ = 10⁴ s, is decayed exactly over the rest.  With this, presentations
  are independent given (W, θ), so frozen-weight runs are batched over
  images with results identical to one-at-a-time runs.
- The paper's code starts θ at 20 mV with a −20 mV offset in the threshold;
  here θ starts at 0 with the same effective threshold (v_thresh = −52 mV).
- Training with ``batch_size`` B > 1 (a speed-up) presents B images at once
  with the same W and θ.  At each step W takes the batch mean of the
  images' eq.-3 changes (a mini-batch estimate of the per-image step; the
  sum would make the within-presentation feedback W↑ → spikes↑ → W↑ B times
  stronger and runs away), while θ takes the sum of their increments, so
  homeostasis still counts every spike as it would sequentially.  B = 1
  (the default) is the paper's sequential protocol.
- The paper gives no values for η, x_tar and μ of the presynaptic rule
  (its code uses a pre/post trace rule instead); the defaults here
  (η = 0.01, x_tar = 0.4, μ = 1) are chosen so that a pixel firing at the
  maximal rate (mean trace r_max τ_pre ≈ 1.3) is potentiated and a dark
  pixel depressed.

Speed: the excitatory drive Σ_j W_ij s_j^n of a whole presentation is one
matmul over time, computed from W at the start; when a learning step changes
rows of W, the drive of the remaining steps is corrected by s @ ΔWᵀ for those
rows only, which equals recomputing it with the new W (checked in the tests).
"""
from __future__ import annotations

import math
from typing import Iterator, NamedTuple

import torch
from torch import nn

from .. import _checks
from .base import Model


class DiehlCookState(NamedTuple):
    v: torch.Tensor                 # membrane potential (mV) [B, N]
    ge: torch.Tensor                # excitatory conductance [B, N]
    gi: torch.Tensor                # inhibitory conductance [B, N]
    refractory: torch.Tensor        # steps of refractoriness left [B, N]
    z: torch.Tensor                 # spikes of the last step [B, N]
    x_pre: torch.Tensor | None      # presynaptic traces [B, n_in] (learning only)


class DiehlCookLocals(NamedTuple):
    """What the learning rule reads after a step (all for the new step)."""
    x_pre: torch.Tensor | None
    z: torch.Tensor
    v: torch.Tensor


def presynaptic_rule(w: torch.Tensor, x_pre: torch.Tensor, post: torch.Tensor, eta: float,
                     x_tar: float, w_max: float, mu: float) -> torch.Tensor:
    """ΔW of Diehl & Cook's eq. 3, batch-averaged: η/B Σ_b z_bi (x_bj − x_tar)(w_max − W_ij)^μ.

    ``w`` [N, n_in], ``x_pre`` [B, n_in] traces, ``post`` [B, N] spikes of this step.
    The result is the unclipped change; the caller clips W + ΔW to [0, w_max].
    """
    drive = post.transpose(0, 1) @ (x_pre - x_tar)          # Σ_b z_bi (x_bj − x_tar)
    return (eta / post.shape[0]) * drive * (w_max - w).clamp(min=0.0).pow(mu)


def normalize_rows(w: torch.Tensor, total: float) -> torch.Tensor:
    """Rescale each neuron's incoming weights (row of ``w``) to sum to ``total``.

    A row of zeros stays zero: there is no direction to rescale.
    """
    sums = w.sum(dim=1, keepdim=True)
    return torch.where(sums > 0, w * (total / sums.clamp(min=torch.finfo(w.dtype).tiny)), w)


def assign_labels(counts: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Label each neuron with the class of highest mean spike count (paper §2.5).

    ``counts`` [n_images, N] spike counts, ``labels`` [n_images] in 0..n_classes−1.
    Returns [N] class indices; a class absent from ``labels`` is never assigned.
    """
    _checks.tensor("counts", counts, rank=2)
    _checks.tensor("labels", labels, rank=1, shape=(counts.shape[0],))
    _checks.positive_int("n_classes", n_classes)
    if labels.is_floating_point() or (labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes)):
        raise ValueError(f"labels must be integers in [0, {n_classes - 1}] (n_classes={n_classes})")
    onehot = nn.functional.one_hot(labels.long(), n_classes).to(counts.dtype)   # [n, C]
    per_class = onehot.sum(0)
    mean = (onehot.transpose(0, 1) @ counts) / per_class.clamp(min=1).unsqueeze(1)   # [C, N]
    mean[per_class == 0] = -1.0
    return mean.argmax(0)


def classify(counts: torch.Tensor, neuron_labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Predict each image's class: the class whose neurons fire most on average.

    ``counts`` [n_images, N], ``neuron_labels`` [N] from :func:`assign_labels`.
    A class with no neurons scores −1, below any class that has some.
    """
    _checks.tensor("counts", counts, rank=2)
    _checks.tensor("neuron_labels", neuron_labels, rank=1, shape=(counts.shape[1],))
    _checks.positive_int("n_classes", n_classes)
    onehot = nn.functional.one_hot(neuron_labels.long(), n_classes).to(counts.dtype)  # [N, C]
    members = onehot.sum(0)
    scores = (counts @ onehot) / members.clamp(min=1)
    scores[:, members == 0] = -1.0
    return scores.argmax(1)


class DiehlCook(Model):
    """Diehl & Cook (2015) excitatory layer with lateral inhibition and STDP input weights.

    Parameters are the paper's (times in seconds, voltages in mV); see the
    module docstring for the equations and the documented simplifications.
    ``seed`` fixes the initial weights, drawn U[0, 0.3] and row-normalised.
    """

    kind = "spiking"

    def __init__(self, n_in: int = 784, n_exc: int = 100, dt: float = 0.5e-3, *,
                 tau_mem: float = 100e-3, tau_ge: float = 1e-3, tau_gi: float = 2e-3,
                 v_rest: float = -65.0, v_reset: float = -65.0, v_thresh: float = -52.0,
                 e_exc: float = 0.0, e_inh: float = -100.0, t_ref: float = 5e-3,
                 w_inh: float = 17.0, theta_plus: float = 0.05, tau_theta: float = 1e4,
                 eta: float = 0.01, x_tar: float = 0.4, mu: float = 1.0, w_max: float = 1.0,
                 tau_pre: float = 20e-3, weight_total: float | None = None,
                 max_rate: float = 63.75, t_present: float = 0.35, t_rest: float = 0.15,
                 min_spikes: int = 5, max_retries: int = 8, seed: int | None = None) -> None:
        super().__init__()
        self.n_in = _checks.positive_int("n_in", n_in)
        self.n_units = self.n_out = self.n_exc = _checks.positive_int("n_exc", n_exc)
        self.dt = _checks.positive("dt", dt)
        for name, value in (("tau_mem", tau_mem), ("tau_ge", tau_ge), ("tau_gi", tau_gi),
                            ("tau_theta", tau_theta), ("tau_pre", tau_pre), ("w_max", w_max),
                            ("max_rate", max_rate), ("t_present", t_present)):
            _checks.positive(name, value)
        for name, value in (("t_ref", t_ref), ("w_inh", w_inh), ("theta_plus", theta_plus),
                            ("eta", eta), ("x_tar", x_tar), ("mu", mu), ("t_rest", t_rest)):
            _checks.non_negative(name, value)
        for name, value in (("v_rest", v_rest), ("v_reset", v_reset), ("v_thresh", v_thresh),
                            ("e_exc", e_exc), ("e_inh", e_inh)):
            _checks.in_range(name, value, -1e3, 1e3)
        if not e_inh < v_rest < v_thresh < e_exc:
            raise ValueError(f"need e_inh < v_rest < v_thresh < e_exc, got e_inh={e_inh}, v_rest={v_rest}, "
                             f"v_thresh={v_thresh}, e_exc={e_exc}")
        if max_rate * (1 + max_retries / 2) * dt > 1:
            raise ValueError(f"max_rate · (1 + max_retries/2) · dt must be <= 1 (one spike per step); got "
                             f"max_rate={max_rate}, max_retries={max_retries}, dt={dt}")
        self.tau_mem, self.v_rest, self.v_reset, self.v_thresh = tau_mem, v_rest, v_reset, v_thresh
        self.e_exc, self.e_inh, self.w_inh = e_exc, e_inh, w_inh
        self.theta_plus, self.tau_theta = theta_plus, tau_theta
        self.eta, self.x_tar, self.mu, self.w_max = eta, x_tar, mu, w_max
        self.max_rate, self.t_rest = max_rate, t_rest
        self.min_spikes = _checks.positive_int("min_spikes", min_spikes, minimum=0)
        self.max_retries = _checks.positive_int("max_retries", max_retries, minimum=0)
        self.weight_total = (_checks.positive("weight_total", weight_total) if weight_total is not None
                             else 0.1 * n_in)   # 78 for 784 inputs, as in the paper
        self.n_present = max(1, round(t_present / dt))
        self.n_ref = round(t_ref / dt)
        self.decay_ge, self.decay_gi = math.exp(-dt / tau_ge), math.exp(-dt / tau_gi)
        self.decay_pre, self.decay_theta = math.exp(-dt / tau_pre), math.exp(-dt / tau_theta)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        w = torch.rand(n_exc, n_in, generator=gen) * 0.3
        self.w = nn.Parameter(normalize_rows(w, self.weight_total), requires_grad=False)
        self.register_buffer("theta", torch.zeros(n_exc))

    # -- the step protocol --------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device | None = None,
                   dtype: torch.dtype | None = None, traces: bool = False) -> DiehlCookState:
        _checks.positive_int("batch_size", batch_size)
        like = dict(device=device or self.device, dtype=dtype or self.dtype)
        zeros = torch.zeros(batch_size, self.n_exc, **like)
        return DiehlCookState(v=torch.full_like(zeros, self.v_rest), ge=zeros, gi=zeros,
                              refractory=torch.zeros(batch_size, self.n_exc, dtype=torch.int32,
                                                     device=like["device"]),
                              z=zeros, x_pre=torch.zeros(batch_size, self.n_in, **like) if traces else None)

    def input_current(self, x: torch.Tensor) -> torch.Tensor:
        """Conductance increments Σ_j W_ij x_j for input spikes ``x [..., n_in]``."""
        return x @ self.w.transpose(0, 1)

    def step(self, x_t: torch.Tensor, state: DiehlCookState, i_in: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, DiehlCookState, DiehlCookLocals]:
        v, ge, gi, refractory, z, x_pre = state
        if x_pre is not None:
            x_pre = x_pre * self.decay_pre + x_t
        increment = self.input_current(x_t) if i_in is None else i_in
        if noise is not None:
            increment = increment + noise
        ge = ge * self.decay_ge + increment
        gi = gi * self.decay_gi + self.w_inh * (z.sum(1, keepdim=True) - z)
        free = refractory == 0
        dv = (self.v_rest - v) + ge * (self.e_exc - v) + gi * (self.e_inh - v)
        v = torch.where(free, v + (self.dt / self.tau_mem) * dv, v)
        spiking = free & (v > self.v_thresh + self.theta)
        z = spiking.to(v.dtype)
        v = torch.where(spiking, torch.full_like(v, self.v_reset), v)
        refractory = torch.where(spiking, torch.full_like(refractory, self.n_ref), (refractory - 1).clamp(min=0))
        return z, DiehlCookState(v, ge, gi, refractory, z, x_pre), DiehlCookLocals(x_pre, z, v)

    # -- presentations ------------------------------------------------------------------
    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        _checks.tensor("images", images, rank=2, shape=(None, self.n_in))
        if not images.is_floating_point():
            raise TypeError(f"images must be a floating-point tensor, got dtype {images.dtype}")
        if images.shape[0] < 1:
            raise ValueError("images must hold at least one image, got 0 rows")
        if float(images.min()) < 0 or float(images.max()) > 1:
            raise ValueError(f"images must hold intensities in [0, 1], got [{float(images.min())}, "
                             f"{float(images.max())}]")
        return images

    def _apply_learning(self, locals_: DiehlCookLocals) -> torch.Tensor:
        """Eq. 3 and the θ increment for this step's spikes; returns ΔW actually applied."""
        z = locals_.z
        new_w = (self.w + presynaptic_rule(self.w, locals_.x_pre, z, self.eta, self.x_tar,
                                           self.w_max, self.mu)).clamp(0.0, self.w_max)
        delta = new_w - self.w
        self.w.copy_(new_w)
        self.theta.add_(self.theta_plus * z.sum(0))
        return delta

    @torch.no_grad()
    def present(self, images: torch.Tensor, rate_scale: float = 1.0, learn: bool = False,
                generator: torch.Generator | None = None, chunk: int = 100,
                recompute_drive: bool = False) -> torch.Tensor:
        """Show ``images [B, n_in]`` once for ``t_present``; return spike counts [B, N].

        Pixels fire as Bernoulli trains with p = intensity · max_rate · rate_scale · dt.
        With ``learn`` the weights and θ change online (module docstring).
        ``recompute_drive`` recomputes the drive from the current W every step
        instead of correcting the precomputed one (the reference for the tests).
        """
        self._check_images(images)
        _checks.positive("rate_scale", rate_scale)
        _checks.positive_int("chunk", chunk)
        probability = images * (self.max_rate * rate_scale * self.dt)
        if float(probability.max()) > 1:
            raise ValueError(f"max_rate · rate_scale · dt must be <= 1, got {float(probability.max())}")
        state = self.init_state(images.shape[0], images.device, images.dtype, traces=learn)
        counts = torch.zeros(images.shape[0], self.n_exc, device=images.device, dtype=images.dtype)
        for start in range(0, self.n_present, chunk):
            steps = min(chunk, self.n_present - start)
            spikes = torch.bernoulli(probability.expand(steps, *probability.shape).contiguous(), generator=generator)
            drive = None if recompute_drive else self.input_current(spikes)
            for t in range(steps):
                z, state, locals_ = self.step(spikes[t], state, None if drive is None else drive[t])
                counts += z
                if learn:
                    self.theta.mul_(self.decay_theta)
                    if bool(z.any()):
                        delta = self._apply_learning(locals_)
                        if drive is not None and t + 1 < steps:
                            rows = z.any(0)
                            drive[t + 1:, :, rows] += spikes[t + 1:] @ delta[rows].transpose(0, 1)
        if learn:
            self.theta.mul_(math.exp(-self.t_rest / self.tau_theta))
        return counts

    def _present_until_active(self, images: torch.Tensor, learn: bool,
                              generator: torch.Generator | None) -> torch.Tensor:
        """Paper's rule: re-show images that drew < min_spikes spikes with rates raised by 32 Hz."""
        counts = self.present(images, 1.0, learn, generator)
        for retry in range(1, self.max_retries + 1):
            quiet = counts.sum(1) < self.min_spikes
            if not bool(quiet.any()):
                break
            counts[quiet] = self.present(images[quiet], 1.0 + retry / 2, learn, generator)
        return counts

    def fit(self, images: torch.Tensor, epochs: int = 1, batch_size: int = 1,
            generator: torch.Generator | None = None, progress: bool = False) -> None:
        """Unsupervised training: each image in turn (``batch_size`` at a time), ``epochs`` times."""
        self._check_images(images)
        _checks.positive_int("epochs", epochs)
        _checks.positive_int("batch_size", batch_size)
        order_gen = generator if generator is not None else torch.Generator().manual_seed(0)
        n = images.shape[0]
        for epoch in range(epochs):
            order = torch.randperm(n, generator=order_gen)
            for start in range(0, n, batch_size):
                with torch.no_grad():
                    self.w.copy_(normalize_rows(self.w, self.weight_total))
                self._present_until_active(images[order[start:start + batch_size]], True, generator)
                if progress and (start // batch_size) % 200 == 0:
                    print(f"epoch {epoch + 1}/{epochs}: image {start}/{n}", flush=True)
        with torch.no_grad():
            self.w.copy_(normalize_rows(self.w, self.weight_total))

    def responses(self, images: torch.Tensor, batch_size: int = 500,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Spike counts [n_images, N] with W and θ frozen, batched over images."""
        self._check_images(images)
        _checks.positive_int("batch_size", batch_size)
        return torch.cat([self._present_until_active(part, False, generator)
                          for part in _batches(images, batch_size)])


def _batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, images.shape[0], batch_size):
        yield images[start:start + batch_size]
