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
  Counting a conductance increment in full in its own step overestimates
  each input spike's charge by (dt/τ_ge)/(1 − e^{−dt/τ_ge}): 27 % at the
  paper's dt = 0.5 ms, 58 % at 1 ms.  Use dt ≤ 0.5 ms: at 1 ms, training on
  Fashion-MNIST (about twice MNIST's mean intensity) fell into synchronous
  volleys of the whole layer within a few hundred images (θ ≈ 30–50 mV in
  every neuron, 1–3 classes), while 0.5 ms trained 100 neurons stably.
  With 400 neurons the same collapse also happened at 0.5 ms and B = 1
  (θ ≈ 52 mV in every neuron, one class after 1000 images) until ties were
  broken (next item).
- Simultaneous crossings (``tie_break=True``, the default): in continuous
  time the first neuron to cross threshold fires and its inhibition
  (w_inh = 17, driving v towards −100 mV) reaches the others before they
  cross.  In a step of 0.5 ms, neurons with similar weights cross together
  and all fire; with 400 neurons on a uniform start this happened on most
  images, every neuron learned the mean image and the layer fired in
  volleys.  With ``tie_break`` only the neuron furthest above its threshold
  in each image fires in that step (the earliest crossing when the
  membranes rise at similar rates); the others keep their voltage and meet
  the inhibition in the next step.  Measured on the first 500 Fashion-MNIST
  images, 400 neurons, seed 0: without it 1113 spikes per image and one
  class; with it 27 spikes per image and neurons for all 10 classes.
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
- θ is held fixed within a presentation except for its spike increments
  and decayed exactly over the presentation and the rest at its end (the
  decay over 500 ms is a factor 1 − 5·10⁻⁵ with τ_θ = 10⁴ s).
- Training with ``batch_size`` B > 1 (a speed-up) presents B images at once
  with the same W and θ.  At each step both W and θ take the batch mean of
  the images' changes, ΔW = (η/B) Σ_b z_bi (x_bj − x_tar)(w_max − W_ij)^μ and
  Δθ_i = θ₊ (1/B) Σ_b z_bi, a mini-batch estimate of the per-image step.
  (Summing Δθ while averaging ΔW would let θ grow B-fold faster than the
  weights learn.)  B = 1 (the default) is the paper's sequential protocol.
- The paper gives no values for η, x_tar and μ of the presynaptic rule
  (its code uses a pre/post trace rule instead); the defaults here
  (η = 0.01, x_tar = 0.4, μ = 1) are chosen so that a pixel firing at the
  maximal rate (mean trace r_max τ_pre ≈ 1.3) is potentiated and a dark
  pixel depressed.

Speed (``present``; ``step`` is the same model for the engine): per step
only the dense neuron update runs.  The drive Σ_j W_ij s_j^n of a chunk of
steps is one matmul over the pixels that fire in it, from W at the chunk's
start; when a post spike changes rows of W, the drive of the chunk's
remaining steps is corrected by s @ ΔWᵀ for those rows only, which equals
recomputing it with the new W.  Presynaptic traces are needed only at post
spikes and are brought up to date there from the stored input spikes.  A
training presentation is one chunk.  The tests check all of this against
the step protocol with W and θ updated after every step.
"""
from __future__ import annotations

import math
from typing import Iterable, Iterator, NamedTuple

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


def strongest_crossing(spiking: torch.Tensor, overshoot: torch.Tensor) -> torch.Tensor:
    """Of the neurons crossing threshold in one step (``spiking`` [B, N]), keep in each row the
    one furthest above it (``overshoot`` = v − threshold); exact ties all fire."""
    lead = overshoot.masked_fill(~spiking, float("-inf"))
    return spiking & (lead == lead.amax(1, keepdim=True))


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
                 min_spikes: int = 5, max_retries: int = 8, tie_break: bool = True,
                 seed: int | None = None) -> None:
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
        self.tie_break = _checks.boolean("tie_break", tie_break)
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
        if self.tie_break:
            spiking = strongest_crossing(spiking, v - (self.v_thresh + self.theta))
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

    def poisson(self, images: torch.Tensor, rate_scale: float = 1.0, generator: torch.Generator | None = None,
                chunk: int | None = None) -> Iterator[torch.Tensor]:
        """Input spike trains of one presentation, ``chunk`` steps [steps, B, n_in] at a time.

        Pixels fire as Bernoulli trains with p = intensity · max_rate · rate_scale · dt
        (all ``n_present`` steps in one chunk when ``chunk`` is None).
        """
        self._check_images(images)
        _checks.positive("rate_scale", rate_scale)
        chunk = self.n_present if chunk is None else _checks.positive_int("chunk", chunk)
        probability = images * (self.max_rate * rate_scale * self.dt)
        if float(probability.max()) > 1:
            raise ValueError(f"max_rate · rate_scale · dt must be <= 1, got {float(probability.max())}")
        for start in range(0, self.n_present, chunk):
            steps = min(chunk, self.n_present - start)
            yield torch.bernoulli(probability.expand(steps, *probability.shape).contiguous(), generator=generator)

    @torch.no_grad()
    def present(self, images: torch.Tensor, rate_scale: float = 1.0, learn: bool = False,
                generator: torch.Generator | None = None, chunk: int = 100) -> torch.Tensor:
        """Show ``images [B, n_in]`` once for ``t_present``; return spike counts [B, N].

        With ``learn`` the weights and θ change online (module docstring) and the
        whole presentation is drawn at once; frozen runs draw ``chunk`` steps at a time.
        """
        self._check_images(images)
        chunks = self.poisson(images, rate_scale, generator, None if learn else chunk)
        return self.present_spikes(chunks, images.shape[0], learn)

    @torch.no_grad()
    def present_spikes(self, chunks: Iterable[torch.Tensor], batch_size: int, learn: bool = False) -> torch.Tensor:
        """Run one presentation of given input spikes (consecutive chunks [steps, B, n_in]).

        Returns spike counts [B, N].  The network starts at rest; with ``learn``
        eq. 3 and the θ increments are applied at each step with a post spike,
        and θ is then decayed over the presentation and the rest.
        """
        _checks.positive_int("batch_size", batch_size)
        run = _Presentation(self, batch_size, learn)
        for spikes in chunks:
            _checks.tensor("spikes", spikes, rank=3, shape=(None, batch_size, self.n_in))
            run.advance(spikes)
        if learn:
            self.theta.mul_(math.exp(-(run.t * self.dt + self.t_rest) / self.tau_theta))
        return run.counts

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


class _Presentation:
    """One presentation, simulated chunk by chunk (the "Speed" paragraph of the module docstring).

    Traces are brought from step t₀ to t at post spikes only:
    x(t) = x(t₀) e^{−(t−t₀)dt/τ_pre} + Σ_{t₀<s≤t} e^{−(t−s)dt/τ_pre} s(s).
    """

    def __init__(self, net: DiehlCook, batch_size: int, learn: bool) -> None:
        like = dict(device=net.device, dtype=net.dtype)
        self.net, self.learn, self.t = net, learn, 0
        shape = (batch_size, net.n_exc)
        self.v = torch.full(shape, net.v_rest, **like)
        self.ge, self.gi = torch.zeros(shape, **like), torch.zeros(shape, **like)
        self.counts = torch.zeros(shape, **like)
        self.last_spike = torch.full(shape, -math.inf, **like)      # step of each neuron's last spike
        self.last_any = -math.inf                                    # step of the layer's last spike
        self.inhibit: torch.Tensor | None = None                     # g_i increments due next step
        self.threshold = net.v_thresh + net.theta
        self.x_pre = torch.zeros(batch_size, net.n_in, **like) if learn else None
        self.x_step = -1                                             # step that x_pre refers to

    def advance(self, spikes: torch.Tensor) -> None:
        net, t0 = self.net, self.t
        cols = spikes.flatten(0, 1).any(0).nonzero().squeeze(1)     # pixels that fire in this chunk
        spikes_active = spikes[:, :, cols]
        drive = spikes_active @ net.w[:, cols].transpose(0, 1)
        rate = net.dt / net.tau_mem
        for i in range(spikes.shape[0]):
            t = t0 + i
            self.ge.mul_(net.decay_ge).add_(drive[i])
            self.gi.mul_(net.decay_gi)
            if self.inhibit is not None:
                self.gi.add_(self.inhibit)
            # (E_rest − v) + g_e (E_exc − v) + g_i (E_inh − v), in in-place ops (scalar − tensor is slow)
            dv = torch.mul(self.ge, net.e_exc).add_(self.gi, alpha=net.e_inh).add_(net.v_rest)
            dv.addcmul_(self.ge + self.gi, self.v, value=-1.0).sub_(self.v)
            if t - self.last_any > net.n_ref:                        # nobody is refractory
                self.v.add_(dv, alpha=rate)
                spiking = self.v > self.threshold
            else:
                free = (t - self.last_spike) > net.n_ref
                self.v.add_(dv.mul_(free), alpha=rate)
                spiking = (self.v > self.threshold) & free
            if not bool(spiking.any()):
                self.inhibit = None
                continue
            if net.tie_break:
                spiking = strongest_crossing(spiking, self.v - self.threshold)
            z = spiking.to(self.v.dtype)
            self.counts += z
            self.v.masked_fill_(spiking, net.v_reset)
            self.last_spike.masked_fill_(spiking, float(t))
            self.last_any = t
            self.inhibit = net.w_inh * (z.sum(1, keepdim=True) - z)
            if self.learn:
                self._learn(spikes, t0, t, z, spiking, drive[i + 1:], spikes_active[i + 1:], cols)
        self.t = t0 + spikes.shape[0]
        if self.learn:
            self._update_trace(spikes, t0, self.t - 1)

    def _update_trace(self, spikes: torch.Tensor, t0: int, t: int) -> None:
        """Bring x_pre from step ``x_step`` to step ``t`` (both in this chunk or ``x_step`` just before it)."""
        n = t - self.x_step
        if n <= 0:
            return
        decay = self.net.decay_pre
        weights = decay ** torch.arange(n - 1, -1, -1, device=spikes.device, dtype=spikes.dtype)
        recent = spikes[self.x_step + 1 - t0:t + 1 - t0]
        self.x_pre = self.x_pre * decay ** n + torch.tensordot(weights, recent, dims=1)
        self.x_step = t

    def _learn(self, spikes: torch.Tensor, t0: int, t: int, z: torch.Tensor, spiking: torch.Tensor,
               future_drive: torch.Tensor, future_spikes: torch.Tensor, cols: torch.Tensor) -> None:
        """Eq. 3 for the neurons that spiked at step ``t`` and θ += θ₊ · (batch mean of z)."""
        net = self.net
        self._update_trace(spikes, t0, t)
        rows = spiking.any(0).nonzero().squeeze(1)
        w_rows = net.w[rows]
        new = (w_rows + presynaptic_rule(w_rows, self.x_pre, z[:, rows], net.eta, net.x_tar,
                                         net.w_max, net.mu)).clamp(0.0, net.w_max)
        net.w[rows] = new
        net.theta.add_(net.theta_plus * z.mean(0))
        self.threshold = net.v_thresh + net.theta
        if future_drive.shape[0]:
            future_drive[:, :, rows] += future_spikes @ (new - w_rows)[:, cols].transpose(0, 1)
