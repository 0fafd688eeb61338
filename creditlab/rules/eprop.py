"""e-prop: eligibility propagation (Bellec et al. 2020, Nat. Commun. 11:3625).

The loss gradient of a recurrent network factorises as

    dL/dW_ji = Σ_t (dL/dz_j^t) · e_ji^t,                            (Bellec eq. 1)

and e-prop replaces the total derivative dL/dz_j^t by its direct part
∂L/∂z_j^t — the path through the readout only, no propagation through
future network states — which the readout can broadcast online as a
learning signal L_j^t.  The eligibility trace e_ji^t = (∂z_j^t/∂h_j^t) ε_ji^t
is computed forward in time from the eligibility vector ε_ji^t, the
derivative of neuron j's hidden state h_j with respect to W_ji through
j's own dynamics only:  ε_ji^{t+1} = (∂h_j^{t+1}/∂h_j^t) ε_ji^t + ∂h_j^{t+1}/∂W_ji.

Spiking networks (creditlab ``LIF``; Methods, "Eligibility traces"), with
ψ_j^t = ∂z_j^t/∂v_j^t the pseudo-derivative (0 while refractory) and
x̂_i^{t+1} the presynaptic signal the synapse delivers at step t+1
(input x_i^{t+1} or recurrent spike z_i^t):

    LIF:   ε_ji^{t+1} = α ε_ji^t + x̂_i^{t+1} = z̄_i^{t+1}   (α-filtered presynaptic)
           e_ji^{t+1} = ψ_j^{t+1} z̄_i^{t+1}
    ALIF:  ε^v_ji^{t+1} = z̄_i^{t+1}
           ε^a_ji^{t+1} = ψ_j^t z̄_i^t + (ρ − ψ_j^t β_j) ε^a_ji^t
           e_ji^{t+1}   = ψ_j^{t+1} (z̄_i^{t+1} − β_j ε^a_ji^{t+1})

The paper leaves the reset −v_th z_j^t out of ∂h_j^{t+1}/∂h_j^t.  With
``reset_gradient=True`` it is kept, and the neuron Jacobian becomes

    ε^v_ji^{t+1} = (α − v_th ψ_j^t) ε^v_ji^t + v_th β_j ψ_j^t ε^a_ji^t + x̂_i^{t+1}
    ε^a_ji^{t+1} = ψ_j^t ε^v_ji^t + (ρ − ψ_j^t β_j) ε^a_ji^t

so that in a network without recurrent weights e-prop is the exact
(surrogate) gradient that BPTT computes.

Learning signal and readout.  The readout y_k^t = κ y_k^{t−1} + Σ_j W^out_kj z_j^t
+ b_k is a leaky integrator, so ∂L/∂z_j^t = Σ_{t'≥t} κ^{t'−t} Σ_k W^out_kj δ_k^{t'},
with δ^t = ∂ℓ_t/∂y^t the per-step output error ((y − y*) for mean squared
error, (π − π*) for cross-entropy, up to the loss normalisation).  Moving
the filter onto the trace keeps the rule online (Methods, eq. for ē):

    L_j^t = Σ_k B_jk δ_k^t,    ē_ji^t = κ ē_ji^{t−1} + e_ji^t,
    ∂L/∂W_ji ≈ Σ_t L_j^t ē_ji^t,
    ∂L/∂W^out_kj = Σ_t δ_k^t z̃_j^t,  z̃_j^t = κ z̃_j^{t−1} + z_j^t   (exact),
    ∂L/∂b_k = Σ_t δ_k^t b̃^t,          b̃^t = κ b̃^{t−1} + 1        (exact).

Feedback B:
- ``"symmetric"``: B = (W^out)ᵀ, its current value at the start of each run;
- ``"random"``: a fixed B_jk ~ N(0, 1/n_rec), drawn once at ``attach`` from ``seed``;
- ``"adaptive"`` (Kolen–Pollack, as Bellec's "adaptive e-prop"): B starts
  as in ``"random"`` and after every run (in ``end``) receives the readout's
  gradient step with weight decay,
      B ← (1 − feedback_decay) B − feedback_lr (∂L/∂W^out)ᵀ.
  Training W^out with ``torch.optim.SGD(lr=feedback_lr, weight_decay=λ)``
  and ``feedback_decay = feedback_lr·λ`` gives W^out the same update, so
  B − (W^out)ᵀ shrinks by (1 − feedback_decay) every run; with another
  optimizer B follows the readout's gradient, not its exact step.

Firing-rate regularisation (Methods, "Firing rate regularization"):
R = Σ_j (f_j − f_target)² with f_j = Σ_{t,b} z_j^{t,b} / (T·B·dt) in Hz.  Its
direct derivative ∂R/∂z_j^t = 2 (f_j − f_target) / (T·B·dt) is the same for
every step, so ``rate_reg``·∂R/∂W_ji = rate_reg · 2(f_j − f_target)/(T·B·dt) ·
Σ_{t,b} e_ji^t: the (unfiltered) traces are summed online and the factor is
applied when the run ends.  The value of ``rate_reg``·R is kept as
``rule.rate_penalty``.  Since rates are in Hz the factor carries 1/dt: at
dt = 1 ms, ``rate_reg`` ≈ 1e-6–1e-5 keeps the regulariser's gradient below the
task's (1e-3 makes it dominate by about two orders of magnitude).

Rate networks (creditlab ``RateRNN``; Murray 2019's Euler step
h^{t+1} = (1 − λ) h^t + λ (W r^t + W_in u^{t+1} + b), λ = dt/τ, y = W_out r + b_out):

    ε_ji^{t+1} = (1 − λ) ε_ji^t + λ x̂_i^{t+1}   (x̂ = u^{t+1}, r^t or 1 for the bias)
    e_ji^t = φ'(h_j^t) ε_ji^t,   ∂L/∂W_ji ≈ Σ_t L_j^t e_ji^t   (no readout leak: κ = 0).

Without recurrent weights (W = 0) this is the exact gradient.

Traces (for monitors, ``[B, post, pre]``): ``"eligibility"`` (e_ji, recurrent
synapses), ``"eligibility_in"`` (input synapses), ``"eps_a"``/``"eps_a_in"``
(ALIF adaptation eligibility vectors; zero rows for plain LIF neurons, whose
threshold does not adapt), ``"learning_signal"`` (L_j^t, ``[B, N]``).
Memory is constant in T: no autograd graph, nothing stored per step; the
state is O(B·N·(n_in + N)) (ē for every synapse, ε^a for ALIF synapses).
On the CPU the spiking traces (without ``reset_gradient``) and the gradient
sum Σ_b L_j ē_ji run as one compiled pass every ``TRACE_CHUNK`` steps
(:mod:`creditlab.native`; on CUDA a Triton kernel,
:mod:`creditlab.models.fused_triton`): ψ, z̄ and L are staged per step and
each neuron's rows of ē and ε^a are updated through the whole chunk while
in cache, in the order of single steps (reading the traces, e.g. through a
monitor, runs the staged steps first).  When a CPU is left over by PyTorch's
own threads (:func:`spare_cpu`; or ``trace_thread=True``), the C pass of a
chunk runs on a helper thread (:func:`creditlab.native.eprop_traces_start`)
while the simulation stages the next chunk into a second set of buffers: the
trace pass does not feed back into the forward step, so the two overlap on
two cores, and the sums are the same numbers in the same order.  (Sharing a
core with PyTorch's intra-op threads, which spin between operations, the
helper slows the step down instead.)  A rate network
stores ε, δ, ψ and r of ``GRAD_CHUNK`` steps and adds Σ_t L_j^t e_ji^t and the
readout's Σ_t δ_k^t r_j^t over each chunk in one product apiece.

A run is one trial: traces start at zero at every ``Simulator.run``.
Without a target nothing is written into ``p.grad``.
"""
from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import torch

from .. import _checks, native
from ..models import fused_triton
from ..models.base import Model
from ..models.lif import LIF
from ..models.rate import RateRNN
from .base import Rule, accumulate_grad

FEEDBACK = ("symmetric", "random", "adaptive")


#: steps of a rate network whose weight-gradient terms are summed in one matrix product
GRAD_CHUNK = 32
#: steps of LIF/ALIF traces per compiled pass: the [N, B, P] traces cross the memory bus
#: once per chunk, while the chunk's ψ and z̄ (K·B·(N + P) numbers) stay in cache
TRACE_CHUNK = 16


class EProp(Rule):
    """Online e-prop for LIF/ALIF and rate RNNs; writes its estimate into ``p.grad``.

    ``feedback``: ``"symmetric"``, ``"random"`` or ``"adaptive"`` (see module doc).
    ``rate_target`` (Hz) and ``rate_reg`` (≥ 0): firing-rate regularisation of
    spiking networks.  ``seed`` draws the random/adaptive feedback matrix.
    ``feedback_lr``/``feedback_decay``: the adaptive feedback's step and decay.
    ``reset_gradient``: keep the reset in the neuron Jacobian (default: the paper's
    rule, which leaves it out).  ``trace_thread``: run the compiled CPU trace pass
    on a helper thread, overlapped with the simulation (``None``: when a CPU is
    left over by PyTorch's threads, see :func:`spare_cpu`).
    """

    name = "eprop"
    model_kinds = ("spiking", "rate")
    needs_presynaptic_traces = True
    needs_output_error = True
    trace_names = ("eligibility", "eligibility_in", "eps_a", "eps_a_in", "learning_signal")

    def __init__(self, feedback: str = "symmetric", rate_target: float | None = None,
                 rate_reg: float = 0.0, seed: int | None = None, feedback_lr: float = 1e-3,
                 feedback_decay: float = 0.0, reset_gradient: bool = False,
                 trace_thread: bool | None = None) -> None:
        super().__init__()
        self.feedback = _checks.choice("feedback", feedback, FEEDBACK)
        self.rate_reg = _checks.non_negative("rate_reg", rate_reg)
        self.rate_target = None if rate_target is None else _checks.non_negative("rate_target", rate_target)
        if self.rate_reg > 0 and self.rate_target is None:
            raise ValueError("rate_target (Hz) is required when rate_reg > 0")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.seed = seed
        self.feedback_lr = _checks.non_negative("feedback_lr", feedback_lr)
        self.feedback_decay = _checks.in_range("feedback_decay", feedback_decay, 0.0, 1.0)
        if not isinstance(reset_gradient, bool):
            raise TypeError(f"reset_gradient must be a bool, got {type(reset_gradient).__name__}")
        self.reset_gradient = reset_gradient
        self.trace_thread = None if trace_thread is None else _checks.boolean("trace_thread", trace_thread)
        self.feedback_matrix: torch.Tensor | None = None
        self.rate_penalty = 0.0
        self._t: dict[str, Any] = {}

    # -- attach ------------------------------------------------------------------
    def alternative_hint(self, model: Model) -> str:
        return ("; for a feed-forward model use Backprop(), FA(), DFA() or KolenPollack(), "
                "or BPTT() for the exact gradient")

    def attach(self, model: Model) -> None:
        super().attach(model)
        if not isinstance(model, (LIF, RateRNN)):
            raise TypeError(f"EProp derives its eligibility traces from the LIF/ALIF and RateRNN dynamics; "
                            f"it cannot train a {type(model).__name__}. Use SurrogateGradient() or BPTT()")
        if isinstance(model, LIF) and model.max_delay > 0:
            raise ValueError(
                f"EProp cannot train an LIF with synaptic delays (max_delay={model.max_delay}): its "
                "eligibility traces assume each recurrent spike arrives one step later. "
                "Use SurrogateGradient() (BPTT through the delays) or build the LIF with delays=None")
        if isinstance(model, RateRNN) and self.rate_reg > 0:
            raise ValueError("rate_reg regularises spike rates in Hz and needs a spiking model; "
                             "set rate_reg=0 for a RateRNN")
        self.feedback_matrix = None
        if self.feedback != "symmetric":
            gen = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
            n_rec = model.n_rec
            b = torch.randn(n_rec, model.n_out, generator=gen, dtype=torch.float64) / math.sqrt(n_rec)
            self.feedback_matrix = b.to(device=model.device, dtype=model.dtype)

    # -- run ---------------------------------------------------------------------
    def begin(self, model: Model, x: torch.Tensor, target: Any, loss: Any) -> None:
        super().begin(model, x, target, loss)
        if self.model is not model:
            raise RuntimeError("EProp.begin called with a model it was not attached to")
        if self._t:
            self._wait_traces()         # a run that raised may have left its last pass running
        batch, n_in, n_rec, n_out = x.shape[1], model.n_in, model.n_rec, model.n_out
        opts = {"device": x.device, "dtype": x.dtype}
        n_pre = n_in + (n_rec if model.w_rec is not None else 0)
        n_cols = n_pre + (1 if isinstance(model, RateRNN) and model.b is not None else 0)  # + bias
        t: dict[str, Any] = {
            "B": self._feedback(x.dtype, x.device),
            "n_in": n_in, "n_pre": n_pre, "n_steps": x.shape[0], "batch": batch,
            "grad": torch.zeros(n_rec, n_cols, **opts),
            "grad_out": torch.zeros(n_out, n_rec, **opts),
            "grad_b_out": torch.zeros(n_out, **opts),
            "L": torch.zeros(batch, n_rec, **opts),
        }
        if isinstance(model, LIF):
            self._begin_spiking(model, t, batch, n_rec, n_pre, opts)
        else:
            t["eps"] = torch.zeros(batch, n_cols, **opts)
            t["psi"] = torch.zeros(batch, n_rec, **opts)
            t["error"] = None
            chunk = min(GRAD_CHUNK, x.shape[0])
            # the pending steps' ε, δ, ψ and r, summed into the gradients in one product each
            t["traces"] = torch.empty(chunk, batch, n_cols, **opts)
            t["errors"] = torch.empty(chunk, batch, n_out, **opts)
            t["psis"] = torch.empty(chunk, batch, n_rec, **opts)
            t["rates"] = torch.empty(chunk, batch, n_rec, **opts)
            t["pending"] = 0
        self._t = t

    def _begin_spiking(self, model: LIF, t: dict[str, Any], batch: int, n_rec: int, n_pre: int,
                       opts: dict[str, Any]) -> None:
        # ε^a matters only where β_j ≠ 0: the ALIF neurons, which LIF places last.
        # Keeping the reset couples ε^v to ε^a, so that variant tracks every row.
        # Per-synapse traces are stored post-major, [N, B, P], so that the per-neuron
        # sums over the batch (_batch_sum) reduce contiguous memory without a copy.
        n_alif = n_rec if self.reset_gradient else (model.n_adaptive if model.beta > 0 else 0)
        rows = slice(n_rec - n_alif, n_rec)
        t["rows"] = rows
        t["beta_rows"] = model.beta_vec[rows].to(**opts)[:, None, None]          # [A, 1, 1]
        t["psi"] = torch.zeros(batch, n_rec, **opts)
        t["psi_prev"] = t["psi"]
        t["zbar"] = torch.zeros(batch, n_pre, **opts)
        t["eps_v"] = torch.zeros(n_rec, batch, n_pre, **opts) if self.reset_gradient else None
        t["eps_a"] = torch.zeros(n_alif, batch, n_pre, **opts) if n_alif else None
        t["ebar"] = torch.zeros(n_rec, batch, n_pre, **opts)
        t["z_out"] = torch.zeros(batch, n_rec, **opts)
        t["b_out"] = 0.0
        if self.rate_reg > 0:
            t["e_sum"] = torch.zeros(n_rec, n_pre, **opts)
            t["spikes"] = torch.zeros(n_rec, **opts)
        # the compiled pass (C on the CPU, a Triton kernel on CUDA) runs every TRACE_CHUNK
        # steps and reads and writes each trace once per chunk instead of ~6 times per step
        t["compiled"] = None
        if not self.reset_gradient:
            if native.supports(t["ebar"]):
                t["compiled"] = native.eprop_traces
            elif fused_triton.eprop_usable(t["ebar"]):
                t["compiled"] = fused_triton.eprop_traces
        if t["compiled"] is not None:
            chunk = min(TRACE_CHUNK, t["n_steps"])
            n_out = model.n_out
            t["staging"] = self._staging(chunk, batch, n_rec, n_pre, n_out, opts)
            # while the helper thread runs a chunk's pass, the next chunk is staged in a second set
            overlap = spare_cpu() if self.trace_thread is None else self.trace_thread
            t["spare"] = (self._staging(chunk, batch, n_rec, n_pre, n_out, opts)
                          if overlap and t["compiled"] is native.eprop_traces else None)
            t["running"] = False                                          # a pass in flight
            t["active"] = []                                              # steps with a target
            t["staged"] = 0
        t["beta_flat"] = t["beta_rows"].reshape(-1).contiguous()

    @staticmethod
    def _staging(chunk: int, batch: int, n_rec: int, n_pre: int, n_out: int,
                 opts: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Buffers of one chunk's ψ and z̄ (with the step before first at index 0), δ and L."""
        return {"psis": torch.zeros(chunk + 1, batch, n_rec, **opts),
                "zbars": torch.zeros(chunk + 1, batch, n_pre, **opts),
                "errors": torch.zeros(chunk, batch, n_out, **opts),
                "signals": torch.zeros(chunk, batch, n_rec, **opts)}

    def _feedback(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """B [n_rec, n_out] for this run."""
        if self.feedback == "symmetric":
            return self.model.w_out.detach().t().to(device=device, dtype=dtype)
        return self.feedback_matrix.to(device=device, dtype=dtype)

    def step(self, t: int, local: NamedTuple, y_t: torch.Tensor, error_t: torch.Tensor | None) -> None:
        with torch.no_grad():
            if isinstance(self.model, LIF):
                self._step_spiking(local, error_t)
            else:
                self._step_rate(local, error_t)

    def _step_spiking(self, local: NamedTuple, error: torch.Tensor | None) -> None:
        tr = self._t
        tr["psi_prev"], tr["psi"] = tr["psi"], local.psi
        if "spikes" in tr:
            tr["spikes"].add_(local.z.sum(0))
        if tr["compiled"] is not None:
            self._stage_traces(local, error)
        else:
            self._step_traces(local, error)
        tr["z_out"].mul_(self.model.kappa).add_(local.z)
        tr["b_out"] = self.model.kappa * tr["b_out"] + 1.0
        if error is not None:
            self._accumulate_readout(error, tr["z_out"], tr["b_out"])

    def _step_traces(self, local: NamedTuple, error: torch.Tensor | None) -> None:
        """This step's traces in PyTorch and, given an error, the gradient sum Σ_b L ē."""
        tr = self._t
        signal = None
        if error is not None:
            if bool(error.any()):
                signal = torch.matmul(error, tr["B"].t(), out=tr["L"])
            else:
                tr["L"].zero_()
        if self.reset_gradient:
            self._traces_with_reset(local)
        else:
            self._traces_paper(local)
        if signal is not None:
            tr["grad"].add_(_batch_sum(signal, tr["ebar"]))

    def _stage_traces(self, local: NamedTuple, error: torch.Tensor | None) -> None:
        """Queue this step's ψ, z̄ and output error δ for the chunk, which runs every TRACE_CHUNK
        steps (and before anything reads the traces): the learning signals L = δ Bᵀ in one
        product, then the compiled pass, :meth:`_traces_paper` and the gradient sum over K
        steps, equal bit for bit to K single steps."""
        tr = self._t
        k, staging = tr["staged"], tr["staging"]
        zbar = staging["zbars"][k + 1]
        if self.model.w_rec is None:
            zbar.copy_(local.zbar_in)
        else:
            torch.cat([local.zbar_in, local.zbar_rec], dim=-1, out=zbar)
        staging["psis"][k + 1].copy_(local.psi)
        if error is None:
            staging["errors"][k].zero_()
        else:
            staging["errors"][k].copy_(error)
        tr["active"].append(error is not None)
        tr["zbar"] = zbar
        tr["staged"] = k + 1
        if k + 1 == staging["signals"].shape[0]:
            self._flush_traces()

    def _flush_traces(self) -> None:
        """Form the staged steps' learning signals, then start the compiled pass: on the helper
        thread when there is a spare set of buffers to stage the next chunk in, else here, to
        completion."""
        model, tr = self.model, self._t
        k, staged = tr["staged"], tr["staging"]
        if not k:
            return
        errors, signals = staged["errors"][:k], staged["signals"][:k]
        torch.matmul(errors, tr["B"].t(), out=signals)
        if tr["active"][-1]:
            tr["L"].copy_(signals[-1])          # the learning signal a monitor reads
        # a step without a target, or with zero error, adds nothing: the pass skips its sum
        present = torch.tensor(tr["active"], dtype=torch.bool, device=errors.device)
        active = (present & errors.reshape(k, -1).any(1)).to(torch.uint8)
        args = (staged["psis"][:k + 1], staged["zbars"][:k + 1], tr["beta_flat"], model.rho, model.kappa,
                tr["ebar"], tr["eps_a"], signals, active, tr["grad"], tr.get("e_sum"))
        self._wait_traces()                  # each pass continues the traces the previous one left
        if tr["spare"] is None:
            tr["compiled"](*args)
        else:
            native.eprop_traces_start(*args)
            tr["running"] = True
            tr["staging"], tr["spare"] = tr["spare"], staged
        # the chunk's last step is the next chunk's step before first (the pass only reads it)
        tr["staging"]["psis"][0].copy_(staged["psis"][k])
        tr["staging"]["zbars"][0].copy_(staged["zbars"][k])
        tr["zbar"] = tr["staging"]["zbars"][0]
        tr["staged"], tr["active"] = 0, []

    def _settle_traces(self) -> None:
        """Run the staged steps and wait for the pass: ē, ε^a and the gradient are then current."""
        self._flush_traces()
        self._wait_traces()

    def _wait_traces(self) -> None:
        if self._t.get("running"):
            native.eprop_traces_wait()
            self._t["running"] = False

    def _traces_paper(self, local: NamedTuple) -> None:
        """ε^v = z̄ (shared by all postsynaptic neurons); ε^a and ē updated in place."""
        model, tr = self.model, self._t
        psi, rows, beta = tr["psi"], tr["rows"], tr["beta_rows"]
        zbar = self._presynaptic(local.zbar_in, local.zbar_rec)                  # z̄^{t+1} [B, P]
        psi_post = psi.t().unsqueeze(-1)                                          # [N, B, 1]
        eps_a = tr["eps_a"]
        if eps_a is not None:                          # ψ^t z̄^t + (ρ − ψ^t β) ε^a^t
            psi_prev = tr["psi_prev"].t()[rows].unsqueeze(-1)
            eps_a.mul_(model.rho - beta * psi_prev).addcmul_(psi_prev, tr["zbar"].unsqueeze(0))
        ebar = tr["ebar"].mul_(model.kappa).addcmul_(psi_post, zbar.unsqueeze(0))
        if eps_a is not None:
            ebar[rows].addcmul_(psi_post[rows] * beta, eps_a, value=-1.0)
        if "e_sum" in tr:
            tr["e_sum"].add_(psi.t() @ zbar)
            if eps_a is not None:
                tr["e_sum"][rows].sub_(_batch_sum(psi[:, rows] * beta[:, 0, 0], eps_a))
        tr["zbar"] = zbar

    def _traces_with_reset(self, local: NamedTuple) -> None:
        """ε^v, ε^a per synapse through the full neuron Jacobian (reset included)."""
        model, tr = self.model, self._t
        beta, psi_prev = tr["beta_rows"], tr["psi_prev"].t().unsqueeze(-1)
        delivered = self._presynaptic(local.x, local.pre_rec).unsqueeze(0)      # x̂^{t+1} [1, B, P]
        eps_v, eps_a = tr["eps_v"], tr["eps_a"]
        tr["eps_v"] = ((model.alpha - model.v_th * psi_prev) * eps_v
                       + (model.v_th * beta) * psi_prev * eps_a + delivered)
        tr["eps_a"] = psi_prev * eps_v + (model.rho - beta * psi_prev) * eps_a
        e = tr["psi"].t().unsqueeze(-1) * (tr["eps_v"] - beta * tr["eps_a"])
        tr["ebar"].mul_(model.kappa).add_(e)
        if "e_sum" in tr:
            tr["e_sum"].add_(e.sum(1))

    def _eligibility(self) -> torch.Tensor:
        """e_ji^t = ψ_j^t (ε^v_ji^t − β_j ε^a_ji^t) as [B, N, P]."""
        tr = self._t
        if isinstance(self.model, RateRNN):
            return tr["psi"].unsqueeze(-1) * tr["eps"][:, None, :tr["n_pre"]]
        psi = tr["psi"].t().unsqueeze(-1)                                          # [N, B, 1]
        if self.reset_gradient:
            return (psi * (tr["eps_v"] - tr["beta_rows"] * tr["eps_a"])).transpose(0, 1)
        e = psi * tr["zbar"].unsqueeze(0)
        if tr["eps_a"] is not None:
            rows = tr["rows"]
            e[rows] -= psi[rows] * tr["beta_rows"] * tr["eps_a"]
        return e.transpose(0, 1)

    def _learning_signal(self) -> torch.Tensor:
        """L^t = δ^t Bᵀ of the current step (a rate network forms it per chunk, so here on demand)."""
        tr = self._t
        if isinstance(self.model, LIF):
            return tr["L"]
        return tr["L"] if tr["error"] is None else tr["error"] @ tr["B"].t()

    def _eps_a(self) -> torch.Tensor | None:
        """ε^a as [B, N, P] (rows of neurons without adaptation are zero)."""
        tr = self._t
        eps_a = tr.get("eps_a")
        if eps_a is None:
            return None
        full = eps_a.new_zeros(self.model.n_rec, *eps_a.shape[1:])
        full[tr["rows"]] = eps_a
        return full.transpose(0, 1)

    def _step_rate(self, local: NamedTuple, error: torch.Tensor | None) -> None:
        """ε^{t+1} = (1 − λ) ε^t + λ x̂ written straight into the pending-steps buffer, then δ, ψ
        and r stored beside it: the gradient terms are summed per chunk in :meth:`_flush_rate`."""
        model, tr = self.model, self._t
        k, n_in, n_pre = tr["pending"], tr["n_in"], tr["n_pre"]
        eps = torch.mul(tr["eps"], 1 - model.leak, out=tr["traces"][k])
        eps[:, :n_in].add_(local.x, alpha=model.leak)
        if model.w_rec is not None:
            eps[:, n_in:n_pre].add_(local.pre_rec, alpha=model.leak)
        if model.b is not None:
            eps[:, n_pre:].add_(model.leak)
        tr["eps"], tr["psi"], tr["error"] = eps, local.psi, error
        if error is not None:
            tr["errors"][k].copy_(error)
            tr["psis"][k].copy_(local.psi)
            tr["rates"][k].copy_(local.r)
            tr["pending"] = k + 1
            if k + 1 == tr["traces"].shape[0]:
                self._flush_rate()

    def _flush_rate(self) -> None:
        """Add the pending steps' terms to the gradients, one product each:

            ∂L/∂W  += Σ_t (L^t ⊙ ψ^t)ᵀ ε^t,   L^t = δ^t Bᵀ
            ∂L/∂W_out += Σ_t (δ^t)ᵀ r^t,    ∂L/∂b_out += Σ_t Σ_b δ^t

        Products over k·B rows instead of k products over B rows each: the same sums,
        at a matrix-product efficiency that B = 32 rows alone do not reach."""
        tr = self._t
        k = tr["pending"]
        if k:
            n_rec, n_out, n_cols = tr["psis"].shape[-1], tr["errors"].shape[-1], tr["traces"].shape[-1]
            errors = tr["errors"][:k].view(-1, n_out)
            signals = (errors @ tr["B"].t()).mul_(tr["psis"][:k].view(-1, n_rec))
            tr["grad"].addmm_(signals.t(), tr["traces"][:k].view(-1, n_cols))
            tr["grad_out"].addmm_(errors.t(), tr["rates"][:k].view(-1, n_rec))
            tr["grad_b_out"].add_(errors.sum(0))
            tr["pending"] = 0

    def _presynaptic(self, inputs: torch.Tensor, recurrent: torch.Tensor) -> torch.Tensor:
        """[inputs | recurrent] along the presynaptic axis (inputs only without W_rec)."""
        if self.model.w_rec is None:
            return inputs
        return torch.cat([inputs, recurrent], dim=-1)

    def _accumulate_readout(self, error: torch.Tensor, filtered_rate: torch.Tensor, filtered_one: float) -> None:
        tr = self._t
        tr["grad_out"].add_(error.t() @ filtered_rate)
        tr["grad_b_out"].add_(error.sum(0), alpha=filtered_one)

    def end(self, outputs: torch.Tensor, target: Any, loss: torch.Tensor | None) -> None:
        if target is None:
            self._wait_traces()                # no pass outlives the run that started it
            return
        model, tr = self.model, self._t
        if "pending" in tr:
            self._flush_rate()
        if "staged" in tr:
            self._settle_traces()
        grad = tr["grad"]
        if "e_sum" in tr:
            grad = grad + self._rate_gradient(tr)
        n_in = tr["n_in"]
        self._write(model.w_in, grad[:, :n_in])
        if model.w_rec is not None:
            w_rec_grad = grad[:, n_in:n_in + model.n_rec]
            self._write(model.w_rec, w_rec_grad * model.rec_mask if isinstance(model, LIF) else w_rec_grad)
        if isinstance(model, RateRNN) and model.b is not None:
            self._write(model.b, grad[:, -1])
        self._write(model.w_out, tr["grad_out"])
        self._write(model.b_out, tr["grad_b_out"])
        if self.feedback == "adaptive":
            b = self.feedback_matrix
            update = tr["grad_out"].t().to(device=b.device, dtype=b.dtype)
            self.feedback_matrix = (1 - self.feedback_decay) * b - self.feedback_lr * update

    def _rate_gradient(self, tr: dict[str, Any]) -> torch.Tensor:
        """rate_reg · ∂R/∂W via the summed eligibility traces; sets ``rate_penalty``."""
        count = tr["n_steps"] * tr["batch"] * self.model.dt
        excess = tr["spikes"] / count - self.rate_target                           # f_j − f_target [N]
        self.rate_penalty = float(self.rate_reg * (excess ** 2).sum())
        return (self.rate_reg * 2.0 / count) * excess.unsqueeze(1) * tr["e_sum"]

    @staticmethod
    def _write(param: torch.nn.Parameter, estimate: torch.Tensor) -> None:
        if param.requires_grad:
            accumulate_grad(param, estimate)

    # -- monitors ----------------------------------------------------------------
    def traces(self) -> dict[str, torch.Tensor]:
        tr = self._t
        if not tr:
            return {}
        if "staged" in tr:
            self._settle_traces()
        e, eps_a, n_in = self._eligibility(), self._eps_a(), tr["n_in"]
        out = {"eligibility_in": e[..., :n_in], "learning_signal": self._learning_signal()}
        if self.model.w_rec is not None:
            out["eligibility"] = e[..., n_in:]
        if eps_a is not None:
            out["eps_a_in"] = eps_a[..., :n_in]
            if self.model.w_rec is not None:
                out["eps_a"] = eps_a[..., n_in:]
        return out


def spare_cpu() -> bool:
    """Whether this process may run on more CPUs than PyTorch's intra-op threads occupy."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return torch.get_num_threads() < cpus


def _batch_sum(signal: torch.Tensor, traces: torch.Tensor) -> torch.Tensor:
    """Σ_b signal[b, j] · traces[j, b, i] → [N, P].

    A broadcast product and a reduction: for the small per-neuron matrices here it
    is about twice as fast on a CPU as a batched matrix product."""
    return (traces * signal.t().unsqueeze(-1)).sum(1)
