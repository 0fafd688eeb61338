"""Node perturbation for recurrent networks: reward-modulated and exact-noise.

During a trial the rule adds a perturbation ξ_i^t to the input current
(drive) of every recurrent unit i at every step t, through the engine's
``perturbation`` hook, and accumulates a synaptic eligibility online.

Eligibility, ``eligibility="linear"`` (Fiete & Seung 2006, Phys. Rev. Lett.
97:048104)::

    E_ij += ξ_i^t · pre_j^t

with pre_j^t the quantity W_ij multiplies in unit i's drive at step t:

- RateRNN: the presynaptic rate r_j^t for W^rec, the input u_j^{t+1} for
  W^in, 1 for the bias b;
- LIF: the recurrent spike delivered at that step, z_j^{t-1-d_ij} (d_ij the
  synaptic delay), for W^rec; the input x_j^{t+1} for W^in.  The raw
  spikes, not filtered ones: the noise enters the membrane through the
  same current as the spikes, so these are what make ξ ⊗ pre the
  derivative of the current with respect to the weight.

Eligibility, ``eligibility="cubic"`` (Miconi 2017, eLife 6:e20899, rate
networks only)::

    E_ij += S(pre_j^t · (h_i^{t+1} − h̄_i^t)),   S(x) = x³,
    h̄_i ← a h̄_i + (1 − a) h_i^{t+1}            (a = ``fluctuation_decay``, 0.05)

The neuron does not know its perturbation; it sees only the fast
fluctuation of its own excitation h around a short running mean, and the
supralinear S keeps the large, rare excursions that perturbations cause
while suppressing the small ones that recurrent input causes.

Noise enters the unit's drive, not its state: a RateRNN moves h by
(dt/τ) ξ (Miconi adds his perturbation to the total excitation the same
way, so his amplitude 16 moves x by at most 16·dt/τ ≈ 0.53 at τ = 30 ms).

Noise: ξ_i^t = m_i^t · a_i^t with a ~ N(0, σ²) (``noise="gaussian"``) or
U(−σ, σ) (``"uniform"``, Miconi's choice) and m_i^t ~ Bernoulli(p)
(``p_perturb``; Miconi perturbs each neuron at 3 Hz, p = 0.003 at
dt = 1 ms).  Its variance per unit and step is v = p σ² (gaussian) or
p σ²/3 (uniform).

``mode="exact"``: the clean trial (same input and initial state, no noise)
is run again inside ``end`` under ``no_grad`` and, with per-trial losses
L̃_b (perturbed) and L_b (clean) of a loss that averages over trials,

    ∂L/∂W ≈ ĝ = (1/B) Σ_b (L̃_b − L_b) E_b / v.

To first order L̃_b − L_b = Σ_{i,t} (∂L_b/∂I_i^t) ξ_i^t with I_i^t the drive,
and E[ξ ξᵀ] = v·I, so E[ĝ] = (1/B) Σ_b Σ_t (∂L_b/∂I^t) pre^{tᵀ} = ∂L/∂W:
unbiased up to O(σ²) (for Gaussian noise ĝ is exactly the REINFORCE
gradient of the Gaussian-smoothed loss, by Stein's lemma; the clean loss
is a baseline and does not bias it).  For a spiking network the smoothed
loss is the meaningful one: the loss of a Heaviside network is piecewise
constant in the weights.

``mode="reward"`` (Fiete & Seung 2006; Miconi 2017): the reward of trial b
is R_b = −L̃_b and a running baseline R̄_k is kept per trial type k::

    ΔW = η (1/B) Σ_b (R_b − R̄_{k(b)}) E_b / v     (linear eligibility)
    ΔW = η (1/B) Σ_b (R_b − R̄_{k(b)}) E_b         (cubic eligibility)
    R̄_k ← β R̄_k + (1 − β) R_b                    (β = ``baseline_decay``)

in trial order within the batch; every trial of the batch is scored
against the baseline from before the batch, and a type seen for the first
time starts from the mean reward of its trials in that batch.  With
``baseline_scaling=True`` each trial's change is further multiplied by the
magnitude of its baseline, as in Miconi's published code (dnms/net.cpp,
where R̄ = −ē is the running mean error of the trial type)::

    ΔW = η (1/B) Σ_b (R_b − R̄_{k(b)}) |R̄_{k(b)}| E_b          (cubic eligibility)

which anneals the step as the error falls.  With
linear eligibility and R̄ → −L the reward mode becomes the exact mode.
Trial types: ``trial_type=None`` (one type), ``"input"`` (trials with
identical input sequences, Miconi's choice), ``"target"`` (identical
targets) or a callable ``(x, target) -> [B]`` of type labels.

Both modes write ``p.grad = −ΔW/η`` (so any optimizer descends); with
``trial_clip=c`` each trial's estimate is clipped elementwise to [−c, c]
before averaging over the batch (Miconi clips every trial's weight change;
with SGD at lr η·B the batch then applies the sum of the clipped per-trial
changes).

Readout (W_out, b_out, when they require grad): trained by its exact local
delta rule, ∂L/∂W_out = Σ_t e^t ȳ^{tᵀ} with e^t = ∂ℓ_t/∂y^t and ȳ the
presynaptic activity filtered by the readout's own leak κ (κ = 0 for the
RateRNN readout, so ȳ = r).  In exact mode it is accumulated along the
clean trial, so the readout gradient is exact; in reward mode along the
perturbed trial.  Freeze the readout (``requires_grad_(False)``) to learn
from reward alone, as Miconi does with a designated output neuron.

Memory: the eligibilities [B, N, N_pre] and O(B·N) vectors, plus the noise
and the pre- and postsynaptic vectors of at most ``BLOCK`` steps, whose
increments are summed into the eligibilities as one batched matmul;
nothing grows with the number of steps and no autograd graph is built.
"""
from __future__ import annotations

from typing import Any, Callable, Hashable, NamedTuple, Sequence

import torch

from .. import _checks
from ..losses import MSE, TimeLocalLoss
from ..models.base import Model, drive
from .base import Rule, accumulate_grad

MODES = ("reward", "exact")
ELIGIBILITIES = ("linear", "cubic")
NOISES = ("gaussian", "uniform")
TRIAL_TYPES = (None, "input", "target")

TrialTypeFn = Callable[[torch.Tensor, Any], Any]

#: steps whose noise is drawn, and whose eligibility increments are summed, in one call:
#: a batched matmul over a block replaces a rank-one update per step.  The block's
#: buffers are allocated once per run and reused, so a long run allocates nothing
#: per block (freeing and re-allocating megabyte blocks lets the allocator's heap,
#: and with it the resident memory, creep upward with T).
BLOCK = 64


def per_trial_losses(loss: Callable, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_b for each batch entry of ``outputs [T, B, K]``, for a ``loss`` that averages over trials.

    ``target`` is time-major ``[T, B, …]`` or one entry per trial ``[B, …]``.  The loss
    is mapped over trials with ``torch.func.vmap``; a loss vmap cannot trace (one that
    reads values into Python, say) is called trial by trial instead.
    """
    batch = outputs.shape[1]
    if isinstance(loss, MSE) and isinstance(target, torch.Tensor) and target.shape == outputs.shape:
        return loss.per_trial(outputs, target)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor to score trials one by one, got {type(target).__name__}")
    if target.dim() >= 2 and target.shape[:2] == outputs.shape[:2]:
        axis = 1
    elif target.dim() >= 1 and target.shape[0] == batch:
        axis = 0
    else:
        raise ValueError(f"target of shape {tuple(target.shape)} has no batch axis matching outputs "
                         f"{tuple(outputs.shape)}: expected [T, B, …] or [B, …]")

    def one(out: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(loss(out.unsqueeze(1), tgt.unsqueeze(axis)))

    try:
        values = torch.func.vmap(one, in_dims=(1, axis))(outputs, target)
    except RuntimeError:
        values = torch.stack([one(outputs[:, b], target.select(axis, b)) for b in range(batch)])
    return values.to(outputs.dtype)


class _Synapses(NamedTuple):
    """A perturbatively trained parameter and its eligibility [B, N, N_pre] (bias: [B, N])."""
    name: str
    param: torch.nn.Parameter
    trace: str


class NodePerturbation(Rule):
    """Node perturbation for RateRNN and LIF networks (see the module docstring for the equations).

    ``sigma``: noise scale (std for gaussian, half-width for uniform);
    ``mode``: ``"reward"`` or ``"exact"``; ``baseline_decay``: β of the reward
    baseline; ``seed``: seeds the rule's own noise generator; ``baseline_scaling``:
    multiply the reward-mode update by |R̄| (Miconi's code).
    """

    name = "node-perturbation"
    model_kinds = ("rate", "spiking")
    trace_names = ("eligibility", "eligibility_in", "eligibility_bias", "perturbation")

    def __init__(self, sigma: float = 0.1, mode: str = "reward", baseline_decay: float = 0.75,
                 seed: int | None = None, *, eligibility: str = "linear", p_perturb: float = 1.0,
                 noise: str = "gaussian", trial_type: str | TrialTypeFn | None = None,
                 trial_clip: float | None = None, fluctuation_decay: float = 0.05,
                 baseline_scaling: bool = False) -> None:
        super().__init__()
        self.sigma = _checks.positive("sigma", sigma)
        self.mode = _checks.choice("mode", mode, MODES)
        self.baseline_decay = _checks.in_range("baseline_decay", baseline_decay, 0.0, 1.0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.seed = seed
        self.eligibility = _checks.choice("eligibility", eligibility, ELIGIBILITIES)
        if self.mode == "exact" and self.eligibility == "cubic":
            raise ValueError("eligibility='cubic' (Miconi 2017) is not a gradient estimate; "
                             "mode='exact' needs eligibility='linear'")
        self.p_perturb = _checks.in_range("p_perturb", p_perturb, 0.0, 1.0)
        if self.p_perturb == 0.0:
            raise ValueError("p_perturb must be in (0, 1]: with no perturbation there is nothing to learn from")
        self.noise = _checks.choice("noise", noise, NOISES)
        if not (callable(trial_type) or trial_type in TRIAL_TYPES):
            raise ValueError(f"trial_type must be None, 'input', 'target' or a callable (x, target) -> [B] "
                             f"labels; got {trial_type!r}")
        self.trial_type = trial_type
        self.trial_clip = None if trial_clip is None else _checks.positive("trial_clip", trial_clip)
        self.fluctuation_decay = _checks.in_range("fluctuation_decay", fluctuation_decay, 0.0, 1.0)
        if not isinstance(baseline_scaling, bool):
            raise TypeError(f"baseline_scaling must be a bool, got {type(baseline_scaling).__name__}")
        if baseline_scaling and self.mode != "reward":
            raise ValueError("baseline_scaling=True scales the reward-mode update by the baseline |R̄|; "
                             "it needs mode='reward'")
        self.baseline_scaling = baseline_scaling
        #: running reward baseline R̄ per trial type
        self.baselines: dict[Hashable, float] = {}
        self._generator: torch.Generator | None = None
        self._synapses: tuple[_Synapses, ...] = ()
        self._traces: dict[str, torch.Tensor] = {}
        self._modulator: torch.Tensor | None = None

    # -- attach ---------------------------------------------------------------------------
    def alternative_hint(self, model: Model) -> str:
        return ("; for a feed-forward net use the single-step rule cl.rules.SingleStepNodePerturbation"
                if model.kind == "feedforward" else "")

    def attach(self, model: Model) -> None:
        super().attach(model)
        if self.eligibility == "cubic" and model.kind != "rate":
            raise ValueError("eligibility='cubic' follows Miconi 2017 for rate networks (it reads the "
                             f"fluctuation of the unit state h); {type(model).__name__} is a {model.kind} model, "
                             "use eligibility='linear'")
        synapses = []
        if getattr(model, "w_rec", None) is not None:
            synapses.append(_Synapses("w_rec", model.w_rec, "eligibility"))
        synapses.append(_Synapses("w_in", model.w_in, "eligibility_in"))
        if getattr(model, "b", None) is not None:
            synapses.append(_Synapses("b", model.b, "eligibility_bias"))
        self._synapses = tuple(synapses)

    # -- helpers --------------------------------------------------------------------------
    @property
    def noise_variance(self) -> float:
        """v = E[(ξ_i^t)²]: p σ² (gaussian) or p σ²/3 (uniform)."""
        per_event = self.sigma ** 2 if self.noise == "gaussian" else self.sigma ** 2 / 3.0
        return self.p_perturb * per_event

    def _readout(self) -> list[tuple[torch.nn.Parameter, str]]:
        return [(p, n) for n, p in (("w_out", self.model.w_out), ("b_out", self.model.b_out)) if p.requires_grad]

    def _make_generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            seed = self.seed if self.seed is not None else int(torch.randint(0, 2 ** 62, ()).item())
            self._generator = torch.Generator(device=device).manual_seed(seed)
        return self._generator

    def _draw_noise(self, out: torch.Tensor) -> None:
        """Fill ``out`` with ξ in place."""
        gen = self._generator
        if self.noise == "gaussian":
            out.normal_(0.0, self.sigma, generator=gen)
        else:
            out.uniform_(-self.sigma, self.sigma, generator=gen)
        if self.p_perturb < 1.0:
            out.mul_(self._keep.uniform_(generator=gen) < self.p_perturb)

    def _shape(self, values: torch.Tensor) -> torch.Tensor:
        """S(x): identity for linear eligibility, x³ for Miconi's cubic one (S(ab) = S(a)S(b))."""
        return values if self.eligibility == "linear" else values ** 3

    # -- protocol -------------------------------------------------------------------------
    def begin(self, model: Model, x: torch.Tensor, target: Any, loss: Any) -> None:
        readout = self._readout()
        if readout and target is not None and not isinstance(loss, TimeLocalLoss):
            raise TypeError(
                "NodePerturbation trains the readout by its local delta rule, which needs a loss that is a sum "
                "over time steps (a creditlab.losses.TimeLocalLoss such as task.loss or losses.MSE()), got "
                f"{type(loss).__name__}; freeze w_out and b_out (requires_grad_(False)) to use any loss")
        self.needs_output_error = bool(readout) and self.mode == "reward"
        batch, n = x.shape[1], model.n_units
        opts = dict(device=x.device, dtype=x.dtype)
        self._make_generator(x.device)
        traces = {"eligibility": torch.zeros(batch, n, n, **opts) if model.w_rec is not None else None,
                  "eligibility_in": torch.zeros(batch, n, model.n_in, **opts),
                  "eligibility_bias": torch.zeros(batch, n, **opts) if getattr(model, "b", None) is not None else None,
                  "perturbation": torch.zeros(batch, n, **opts)}
        self._traces = {k: v for k, v in traces.items() if v is not None}
        self._x, self._target, self._loss = x, target, loss
        self._readout_grads = {name: torch.zeros_like(p) for p, name in readout}
        self._readout_pre = self._readout_bias = None
        self._initial_state = self._h_bar = self._history = None
        self._modulator = None
        self._delayed = getattr(model, "max_delay", 0) > 0
        self._allocate_block(batch, n, model.n_in, opts)

    def _allocate_block(self, batch: int, n: int, n_in: int, opts: dict) -> None:
        """Column c of each buffer holds step t = (block start) + c; columns [_first, _next) await a flush."""
        self._noise = torch.empty(batch, n, BLOCK, **opts)
        self._keep = torch.empty(batch, n, BLOCK, **opts) if self.p_perturb < 1.0 else None
        self._post = self._noise if self.eligibility == "linear" else torch.empty(batch, n, BLOCK, **opts)
        pooled = "eligibility" in self._traces and not self._delayed
        self._pre = torch.empty(batch, BLOCK, n, **opts) if pooled else None
        self._inputs = torch.empty(batch, BLOCK, n_in, **opts)
        self._first = self._next = 0

    def perturbation(self, t: int, state: Any) -> torch.Tensor:
        if t == 0:
            self._initial_state = state
            if self.eligibility == "cubic":
                self._h_bar = state.h.detach().clone()
        if self._delayed:
            self._history = state.history
        if t % BLOCK == 0:
            self._draw_noise(self._noise)
        xi = self._noise[:, :, t % BLOCK]
        self._traces["perturbation"] = xi
        return xi

    def _pre_recurrent(self, local: NamedTuple) -> Sequence[torch.Tensor]:
        """Presynaptic activity per delay class (one entry without delays)."""
        return self._history if self._history is not None else (local.pre_rec,)

    @torch.no_grad()
    def step(self, t: int, local: NamedTuple, y_t: torch.Tensor, error_t: torch.Tensor | None) -> None:
        column = t % BLOCK
        if self.eligibility == "linear":
            post = self._traces["perturbation"]
        else:
            post = self._post[:, :, column]
            torch.sub(local.h, self._h_bar, out=post)
            self._h_bar.mul_(self.fluctuation_decay).add_(local.h, alpha=1 - self.fluctuation_decay)
        if self._pre is not None:
            self._pre[:, column] = local.pre_rec
        elif "eligibility" in self._traces:  # delay classes: linear eligibility only (cubic is refused for spiking models)
            for mask, pre in zip(self.model.delay_masks, self._pre_recurrent(local)):
                self._traces["eligibility"].addcmul_(post.unsqueeze(2) * pre.unsqueeze(1), mask)
        self._inputs[:, column] = local.x
        self._next = column + 1
        if self._next == BLOCK:
            self._flush()
        if error_t is not None and self._readout_grads:
            self._readout_step(local, error_t)

    def _flush(self) -> None:
        """Add the pending steps' Σ_t S(post^t) ⊗ S(pre^t) to the eligibilities as one batched matmul."""
        first, stop = self._first, self._next
        self._first = self._next = stop % BLOCK
        if stop == first:
            return
        traces = self._traces
        post = self._shape(self._post[:, :, first:stop])                     # [B, N, C]
        traces["eligibility_in"].baddbmm_(post, self._shape(self._inputs[:, first:stop]))
        if self._pre is not None:
            traces["eligibility"].baddbmm_(post, self._shape(self._pre[:, first:stop]))
        if "eligibility_bias" in traces:
            traces["eligibility_bias"].add_(post.sum(2))

    def _readout_step(self, local: NamedTuple, error: torch.Tensor) -> None:
        """e^t ȳ^{tᵀ}, ȳ^t = κ ȳ^{t-1} + (presynaptic readout activity)."""
        kappa = getattr(self.model, "kappa", 0.0)
        pre = local.z if self.model.kind == "spiking" else local.r
        ones = torch.ones_like(error[:, :1])
        if self._readout_pre is None or kappa == 0.0:
            self._readout_pre, self._readout_bias = pre, ones
        else:
            self._readout_pre = kappa * self._readout_pre + pre
            self._readout_bias = kappa * self._readout_bias + ones
        if "w_out" in self._readout_grads:
            self._readout_grads["w_out"].add_(error.t() @ self._readout_pre)
        if "b_out" in self._readout_grads:
            self._readout_grads["b_out"].add_((error * self._readout_bias).sum(0))

    @torch.no_grad()
    def _clean_losses(self) -> torch.Tensor:
        """Run the trial again without noise from the stored initial state; per-trial clean losses."""
        model, x, target, loss = self.model, self._x, self._target, self._loss
        state, outputs = self._initial_state, x.new_empty(x.shape[0], x.shape[1], model.n_out)
        self._readout_pre = None
        for t, (x_t, i_t) in enumerate(drive(model, x)):
            y, state, local = model.step(x_t, state, i_t, None)
            outputs[t] = y
            if self._readout_grads:
                self._readout_step(local, loss.output_error(t, x.shape[0], y, target))
        return per_trial_losses(loss, outputs, target)

    def _trial_keys(self) -> list[Hashable]:
        x, target, kind = self._x, self._target, self.trial_type
        batch = x.shape[1]
        if kind is None:
            return [0] * batch
        if kind == "input":
            rows = x.detach().transpose(0, 1).reshape(batch, -1).cpu()
        elif kind == "target":
            tgt = target.detach()
            rows = (tgt.transpose(0, 1) if tgt.dim() >= 2 and tgt.shape[1] == batch else tgt).reshape(batch, -1).cpu()
        else:
            labels = kind(x, target)
            labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
            if len(labels) != batch:
                raise ValueError(f"trial_type returned {len(labels)} labels for a batch of {batch} trials")
            return labels
        return [row.numpy().tobytes() for row in rows]

    def _advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """R_b − R̄_{k(b)} against the pre-batch baselines, then R̄ updated trial by trial.

        The pre-batch baselines R̄_{k(b)} are kept in ``self._reference`` for ``baseline_scaling``.
        """
        keys, values = self._trial_keys(), rewards.tolist()
        for key in set(keys) - set(self.baselines):
            mine = [r for k, r in zip(keys, values) if k == key]
            self.baselines[key] = sum(mine) / len(mine)
        advantage = [r - self.baselines[k] for k, r in zip(keys, values)]
        self._reference = torch.tensor([self.baselines[k] for k in keys], dtype=rewards.dtype, device=rewards.device)
        beta = self.baseline_decay
        for key, r in zip(keys, values):
            self.baselines[key] = beta * self.baselines[key] + (1 - beta) * r
        return torch.tensor(advantage, dtype=rewards.dtype, device=rewards.device)

    def end(self, outputs: torch.Tensor, target: Any, loss: torch.Tensor | None) -> None:
        if target is None or loss is None:
            raise ValueError("NodePerturbation needs a target to score each trial; pass target= to sim.run")
        self._flush()
        perturbed = per_trial_losses(self._loss, outputs, target)
        if self.mode == "exact":
            modulator = (perturbed - self._clean_losses()) / self.noise_variance
        else:
            modulator = -self._advantages(-perturbed)
            if self.baseline_scaling:
                modulator = modulator * self._reference.abs()
            if self.eligibility == "linear":
                modulator = modulator / self.noise_variance
        self._modulator = modulator
        for name, estimate in self._batch_estimates().items():
            accumulate_grad(getattr(self.model, name), estimate)
        for name, grad in self._readout_grads.items():
            accumulate_grad(getattr(self.model, name), grad)

    def _masked(self, name: str, estimate: torch.Tensor) -> torch.Tensor:
        if name == "w_rec" and hasattr(self.model, "rec_mask"):
            return estimate * self.model.rec_mask
        return estimate

    def _batch_estimates(self) -> dict[str, torch.Tensor]:
        out = {}
        for syn in self._synapses:
            if not syn.param.requires_grad:
                continue
            trace = self._traces[syn.trace]
            if self.trial_clip is None:
                estimate = torch.tensordot(self._modulator, trace, dims=1) / trace.shape[0]
            else:
                shaped = self._modulator.view(-1, *([1] * (trace.dim() - 1)))
                estimate = (shaped * trace).clamp_(-self.trial_clip, self.trial_clip).mean(0)
            out[syn.name] = self._masked(syn.name, estimate)
        return out

    # -- inspection -----------------------------------------------------------------------
    def trial_estimates(self) -> dict[str, torch.Tensor]:
        """Each trial's own estimate ``[B, …]`` of the perturbed parameters from the last run.

        Their batch mean is what ``end`` wrote into ``p.grad`` (before ``trial_clip``);
        the readout's delta-rule gradient is not included.
        """
        if self._modulator is None:
            raise RuntimeError("trial_estimates() needs a finished run with a target; call sim.run(x, target) first")
        out = {}
        for syn in self._synapses:
            trace = self._traces[syn.trace]
            est = self._modulator.view(-1, *([1] * (trace.dim() - 1))) * trace
            out[syn.name] = self._masked(syn.name, est)
        return out

    def traces(self) -> dict[str, torch.Tensor]:
        self._flush()
        return dict(self._traces)
