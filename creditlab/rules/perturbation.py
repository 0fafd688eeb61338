"""Perturbation rules for feed-forward nets: gradients from loss changes, no backward pass.

A feed-forward net is the engine run for one step (``cl.models.MLP``):
``a_l = W_l h_{l-1} + b_l``, ``h_l = f(a_l)``, ``y = a_L``, scalar loss ``L``.
Every estimator here is unbiased to first order in the perturbation size
(exactly unbiased for the forward gradient), which is what the tests check.
With standard normal directions u in d perturbed dimensions and ĝ = (gᵀu)u,

    E[ĝ] = g,    E‖ĝ − g‖² = (d + 1)‖g‖²,

so the variance grows linearly with the number of perturbed dimensions.

WeightPerturbation (Jabri & Flower 1992, IEEE Trans. Neural Netw. 3:154)
    Every parameter θ gets Gaussian noise σΩ, Ω ~ N(0, I); with K samples

        ĝ = (1/K) Σ_k (L(θ + σΩ_k) − L(θ)) Ω_k / σ

    (the brief's ΔW ∝ −(L̃ − L)Ω'/σ² with Ω' = σΩ).  Antithetic pairs use
    (L(θ + σΩ_k) − L(θ − σΩ_k)) / 2σ instead of the one-sided difference,
    which removes the O(σ) curvature bias.  d = number of parameters.

SingleStepNodePerturbation (Williams 1992; Fiete & Seung 2006; Werfel,
Xie & Seung 2005 for the variance comparison)
    Every pre-activation gets noise ξ_l = σu_l, u_l ~ N(0, I) (one draw per
    batch entry), a_l + ξ_l; then

        ĝ_{W_l} = (1/K) Σ_k (L̃_k − L) ξ_{l,k} h_{l-1}ᵀ / σ²,
        ĝ_{b_l} = (1/K) Σ_k (L̃_k − L) ξ_{l,k} / σ²,

    summed over batch entries, with h_{l-1} the clean presynaptic activity.
    E[(L̃ − L)ξ_l]/σ² = ∂L/∂a_l to first order, and ∂L/∂W_l = (∂L/∂a_l) h_{l-1}ᵀ.
    Here d = number of perturbed units (batch × Σ_l n_l), far fewer than the
    number of weights.

ForwardGradient (Baydin, Pearlmutter, Syme, Wood & Torr 2022, "Gradients
without backpropagation"; Ren, Kornblith, Liao & Hinton 2023, "Scaling
forward gradient with local losses", ICLR)
    ``perturb="weights"`` (Baydin et al.): v ~ N(0, I) over all parameters,
    the directional derivative ∇L·v comes from one forward-mode JVP
    (``torch.func.jvp``), and ĝ = (1/K) Σ_k (∇L·v_k) v_k.
    ``perturb="activities"`` (Ren et al.'s activity perturbation, global
    loss): v_l ~ N(0, I) on every pre-activation, ∇_a L·v by a JVP through
    the pre-activation perturbation, and ĝ_{W_l} = (1/K) Σ_k (∇_a L·v_k) v_{l,k} h_{l-1}ᵀ.
    Ren et al.'s per-block local losses are not implemented: the loss is the
    network's own.

All three need an :class:`~creditlab.models.MLP`; other feed-forward models
(``ConvNet``) are refused at ``attach`` in favour of ``BPTT``.  The forward
gradient differentiates the activation, so it also requires one of the
MLP's differentiable activations (tanh, sigmoid, linear, relu — relu's
derivative 1[a > 0] as autograd takes it).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch.func import functional_call, jvp, vmap

from .. import _checks
from ..models.base import Model
from ..models.mlp import MLP, MLPLocals, MLPState
from .base import Rule, accumulate_grad

#: activations whose derivative a forward-mode JVP can use (relu: 1[a > 0])
DIFFERENTIABLE_ACTIVATIONS = ("tanh", "sigmoid", "linear", "relu")

#: upper bound on the elements one batched perturbed pass may hold
_ELEMENTS_PER_PASS = 1 << 23


def _sample_chunks(n_samples: int, elements_per_sample: int) -> Iterator[int]:
    """Sizes of the sample chunks that keep one batched pass under the memory bound."""
    per_pass = max(1, _ELEMENTS_PER_PASS // max(elements_per_sample, 1))
    done = 0
    while done < n_samples:
        size = min(per_pass, n_samples - done)
        yield size
        done += size


class _PerturbationRule(Rule):
    """Shared plumbing: keep the run's input, clean locals and loss; write ``p.grad`` at the end."""

    model_kinds = ("feedforward",)

    def __init__(self, n_samples: int = 1, seed: int | None = None) -> None:
        super().__init__()
        self.n_samples = _checks.positive_int("n_samples", n_samples)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self._x: torch.Tensor | None = None
        self._loss_fn: Callable | None = None
        self._locals: list[MLPLocals] = []

    def alternative_hint(self, model: Model) -> str:
        return "; use cl.rules.BPTT() for recurrent or spiking models"

    def attach(self, model: Model) -> None:
        super().attach(model)
        if not isinstance(model, MLP):
            raise TypeError(f"{type(self).__name__} trains cl.models.MLP networks only, got "
                            f"{type(model).__name__}; train it with cl.rules.BPTT() instead")

    def begin(self, model: Model, x: torch.Tensor, target: Any, loss: Any) -> None:
        super().begin(model, x, target, loss)
        self._x = x.detach()
        self._loss_fn = loss
        self._locals = []

    def step(self, t: int, local: MLPLocals, y_t: torch.Tensor, error_t: torch.Tensor | None) -> None:
        self._locals.append(local)

    def end(self, outputs: torch.Tensor, target: Any, loss: torch.Tensor | None) -> None:
        if loss is None:
            raise ValueError(f"{type(self).__name__} needs a target to compute a loss; pass target= to sim.run")
        shape = outputs.shape
        with torch.no_grad():
            estimate = self.estimate(lambda y: self._loss_fn(y.reshape(shape), target), loss.detach())
        for name, param in self.model.named_parameters():
            if name in estimate:
                accumulate_grad(param, estimate[name])

    def estimate(self, loss_of: Callable[[torch.Tensor], torch.Tensor],
                 clean_loss: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gradient estimate per parameter name; ``loss_of(y [T·B, n_out])`` is the run's loss."""
        raise NotImplementedError

    # -- helpers shared by the estimators ------------------------------------------
    def _flat_input(self) -> torch.Tensor:
        """The run's input as one batch ``[T·B, n_in]`` (steps of an MLP are independent)."""
        return self._x.reshape(-1, self._x.shape[-1])

    def _clean_activities(self) -> list[torch.Tensor]:
        """Clean presynaptic activities h_0 … h_{L-1}, ``[T·B, n]`` each, in step order."""
        per_layer = zip(*(local.activities for local in self._locals))
        return [torch.cat([h.detach() for h in layer], dim=0) for layer in per_layer]

    def _normal(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, dtype=like.dtype).to(like.device)

    @staticmethod
    def _node_estimate(activities: list[torch.Tensor],
                       chunks: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> dict[str, torch.Tensor]:
        """ĝ_{W_l} = Σ_k c_k Σ_n u_{l,k,n} h_{l-1,n}ᵀ and ĝ_{b_l} = Σ_k c_k Σ_n u_{l,k,n}.

        ``chunks`` holds (c ``[K]``, directions ``[K, N, n_l]`` per layer) pairs.
        """
        grads: dict[str, torch.Tensor] = {}
        for index, h in enumerate(activities):
            gw = sum(torch.einsum("k,kno,ni->oi", c, u[index], h) for c, u in chunks)
            gb = sum(torch.einsum("k,kno->o", c, u[index]) for c, u in chunks)
            grads[f"layers.{index}.weight"], grads[f"layers.{index}.bias"] = gw, gb
        return grads


class WeightPerturbation(_PerturbationRule):
    """Weight perturbation (Jabri & Flower 1992): ĝ = (1/K) Σ_k (L(θ+σΩ_k) − L(θ)) Ω_k / σ.

    ``sigma``: perturbation size σ > 0; ``n_samples``: K ≥ 1 (pairs when
    ``antithetic``, each costing two forward passes); ``seed`` fixes the
    noise stream.  The K perturbed networks run as one batched pass
    (``torch.func.vmap``).
    """

    name = "weight-perturbation"

    def __init__(self, sigma: float = 1e-3, n_samples: int = 1, antithetic: bool = False,
                 seed: int | None = None) -> None:
        super().__init__(n_samples, seed)
        self.sigma = _checks.positive("sigma", sigma)
        self.antithetic = _checks.boolean("antithetic", antithetic)

    def _losses(self, params: dict[str, torch.Tensor], x: torch.Tensor,
                loss_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """L(θ_k) for a stack of parameter sets ``params[name]: [K, *shape]``."""
        outputs = vmap(lambda p: functional_call(self.model, p, (x,)))(params)
        return torch.stack([loss_of(y) for y in outputs.unbind(0)])

    def estimate(self, loss_of: Callable[[torch.Tensor], torch.Tensor],
                 clean_loss: torch.Tensor) -> dict[str, torch.Tensor]:
        x, sigma = self._flat_input(), self.sigma
        theta = {n: p.detach() for n, p in self.model.named_parameters()}
        n_params = sum(p.numel() for p in theta.values())
        grads = {n: torch.zeros_like(p) for n, p in theta.items()}
        for k in _sample_chunks(self.n_samples, n_params + x.shape[0] * self.model.n_units):
            omega = {n: self._normal((k, *p.shape), p) for n, p in theta.items()}
            plus = self._losses({n: theta[n] + sigma * omega[n] for n in theta}, x, loss_of)
            if self.antithetic:
                minus = self._losses({n: theta[n] - sigma * omega[n] for n in theta}, x, loss_of)
                coeff = (plus - minus) / (2.0 * sigma)
            else:
                coeff = (plus - clean_loss) / sigma
            for n in theta:
                grads[n] += torch.tensordot(coeff, omega[n], dims=1)
        return {n: g / self.n_samples for n, g in grads.items()}


class SingleStepNodePerturbation(_PerturbationRule):
    """Node perturbation of a feed-forward net: ĝ_{W_l} = (1/K) Σ_k (L̃_k − L) ξ_{l,k} h_{l-1}ᵀ / σ².

    ``sigma``: noise size σ > 0 on every pre-activation (output layer
    included); ``n_samples``: K ≥ 1; ``antithetic`` uses (L(+ξ) − L(−ξ))/2
    in place of L̃ − L.  The K noisy passes run as one batch through
    ``MLP.step(…, noise=(ξ_1, …, ξ_L))``.  The recurrent, reward-modulated
    rule is :class:`~creditlab.rules.NodePerturbation`.
    """

    name = "node-perturbation-ff"

    def __init__(self, sigma: float = 1e-3, n_samples: int = 1, antithetic: bool = False,
                 seed: int | None = None) -> None:
        super().__init__(n_samples, seed)
        self.sigma = _checks.positive("sigma", sigma)
        self.antithetic = _checks.boolean("antithetic", antithetic)

    def _losses(self, x: torch.Tensor, noise: list[torch.Tensor],
                loss_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """L̃_k for noise ``[K, N, n_l]`` per layer, all K passes in one batch."""
        k, n = noise[0].shape[:2]
        flat = tuple(xi.reshape(k * n, -1) for xi in noise)
        y = self.model.step(x.repeat(k, 1), MLPState(), noise=flat)[0]
        return torch.stack([loss_of(out) for out in y.reshape(k, n, -1).unbind(0)])

    def estimate(self, loss_of: Callable[[torch.Tensor], torch.Tensor],
                 clean_loss: torch.Tensor) -> dict[str, torch.Tensor]:
        x, sigma = self._flat_input(), self.sigma
        n_rows, sizes = x.shape[0], self.model.sizes[1:]
        chunks = []
        for k in _sample_chunks(self.n_samples, n_rows * (self.model.n_in + 2 * self.model.n_units)):
            u = [self._normal((k, n_rows, n), x) for n in sizes]
            plus = self._losses(x, [sigma * ul for ul in u], loss_of)
            if self.antithetic:
                minus = self._losses(x, [-sigma * ul for ul in u], loss_of)
                delta = (plus - minus) / 2.0
            else:
                delta = plus - clean_loss
            # (L̃ − L) ξ / σ² with ξ = σu is (L̃ − L) u / σ
            chunks.append((delta / (sigma * self.n_samples), u))
        return self._node_estimate(self._clean_activities(), chunks)


class ForwardGradient(_PerturbationRule):
    """Forward gradient: ĝ = (1/K) Σ_k (∇L·v_k) v_k with ∇L·v from a forward-mode JVP.

    ``perturb="weights"`` (Baydin et al. 2022): v over all parameters.
    ``perturb="activities"`` (Ren et al. 2023): v on the pre-activations,
    ĝ_{W_l} = (1/K) Σ_k (∇_a L·v_k) v_{l,k} h_{l-1}ᵀ.  ``n_samples``: K ≥ 1.
    """

    name = "forward-gradient"

    def __init__(self, perturb: str = "weights", n_samples: int = 1, seed: int | None = None) -> None:
        super().__init__(n_samples, seed)
        self.perturb = _checks.choice("perturb", perturb, ("weights", "activities"))

    def attach(self, model: Model) -> None:
        super().attach(model)
        unknown = [name for name in getattr(model, "activations", ()) if name not in DIFFERENTIABLE_ACTIVATIONS]
        if unknown:
            raise ValueError(
                f"ForwardGradient differentiates the activation, but {type(model).__name__} uses "
                f"{unknown[0]!r}; accepted activations: {', '.join(DIFFERENTIABLE_ACTIVATIONS)}")

    def estimate(self, loss_of: Callable[[torch.Tensor], torch.Tensor],
                 clean_loss: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.perturb == "weights":
            return self._weight_estimate(loss_of)
        return self._activity_estimate(loss_of)

    def _weight_estimate(self, loss_of: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self._flat_input()
        theta = {n: p.detach() for n, p in self.model.named_parameters()}

        def loss_of_params(params: dict[str, torch.Tensor]) -> torch.Tensor:
            return loss_of(functional_call(self.model, params, (x,)))

        def directional(v: dict[str, torch.Tensor]) -> torch.Tensor:
            return jvp(loss_of_params, (theta,), (v,))[1]

        n_params = sum(p.numel() for p in theta.values())
        grads = {n: torch.zeros_like(p) for n, p in theta.items()}
        for k in _sample_chunks(self.n_samples, n_params + 2 * x.shape[0] * self.model.n_units):
            v = {n: self._normal((k, *p.shape), p) for n, p in theta.items()}
            coeff = vmap(directional)(v)
            for n in theta:
                grads[n] += torch.tensordot(coeff, v[n], dims=1)
        return {n: g / self.n_samples for n, g in grads.items()}

    def _activity_estimate(self, loss_of: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self._flat_input()
        zeros = tuple(torch.zeros(x.shape[0], n, dtype=x.dtype, device=x.device) for n in self.model.sizes[1:])

        def loss_of_noise(noise: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return loss_of(self.model.step(x, MLPState(), noise=noise)[0])

        def directional(v: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return jvp(loss_of_noise, (zeros,), (v,))[1]

        chunks = []
        for k in _sample_chunks(self.n_samples, 3 * x.shape[0] * self.model.n_units):
            v = [self._normal((k, *z.shape), z) for z in zeros]
            chunks.append((vmap(directional)(tuple(v)) / self.n_samples, v))
        return self._node_estimate(self._clean_activities(), chunks)
