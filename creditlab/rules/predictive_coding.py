"""Predictive coding (Whittington & Bogacz 2017, Neural Computation 29:1229).

Value nodes x_l of an MLP (one per pre-activation a_l, l = 1 … L); each
layer's nodes predict the next layer's:

    μ_l = W_l φ_l(x_{l-1}) + b_l,      ε_l = (x_l − μ_l) / Σ_l,
    F   = ½ Σ_l Σ_l ‖ε_l‖²,

with φ_1 = identity on the clamped input x_0 = x (the MLP does not pass its
input through f) and φ_l = f for l ≥ 2.  The variances are Σ_l = 1 in the
hidden layers and Σ_L = ``output_variance`` at the output.  The output error
is the target's pull on the prediction, ε_L = −(1/Σ_L) ∂ℓ/∂μ_L, for the loss
the run uses:

- MSE: the output node is clamped to the target, x_L = t, so
  ε_L = (t − μ_L)/Σ_L, the Gaussian energy above;
- CrossEntropy: the output is a categorical distribution softmax(μ_L) and
  its energy term is CE(μ_L, t)/Σ_L, so ε_L = (onehot(t) − softmax(μ_L))/Σ_L
  (the non-Gaussian output layer of Pinchetti, Qi, Lokhande, Salvatori &
  Lukasiewicz 2022, "Predictive coding beyond Gaussian distributions", NeurIPS).

A run is:

1. the engine's step is the feed-forward pass, which initialises
   x_l = a_l (so every hidden error is zero);
2. the output is tied to the target through ε_L above;
3. inference relaxes the hidden nodes by gradient descent on F,
   ``n_inference`` steps of size γ = ``inference_rate``:

       x_l ← x_l + γ (−ε_l + φ'_{l+1}(x_l) ⊙ W_{l+1}ᵀ ε_{l+1}),  l = 1 … L−1;

4. the weights take the local Hebbian update at the relaxed state

       ΔW_l = ε_l φ_l(x_{l-1})ᵀ,   Δb_l = ε_l   (summed over the batch).

At equilibrium ε_l ≈ −(1/Σ_L) ∂ℓ/∂a_l for the per-sample loss ℓ (½‖y − t‖²
or CE), and the approximation becomes exact as the output variance grows
relative to the hidden ones, Σ_L ≫ 1, so that every prediction error stays
small (their Section 2.3 and Figure 3).  Hence ``p.grad = −c Σ_L ΔW`` with
c the factor that turns the summed per-sample loss into creditlab's mean:
c = 2/numel(y) for MSE and 1/(T·B) for CrossEntropy, so the estimate matches
the loss's gradient in size as well as direction.

The relaxation costs ``n_inference`` passes through layers 2 … L per batch
(μ_1 = W_1 x + b_1 stays fixed, the input being clamped): the fewer steps,
the further the update stays from its equilibrium value.  Gradient descent on
F is stable only while γ stays below 2 / (the largest curvature of F in the
x_l), which grows like 1 + ‖W_{l+1}‖₂² f′²: a rate that relaxes an untrained
net in few steps can diverge once training has grown the weights (on
Fashion-MNIST, 784-256-256-10 tanh, γ = 0.5 did so at ‖W_2‖₂ ≈ 3).

``curvature_step=True`` scales each layer's step by a bound on its block of
F's Hessian, so one rate stays stable as the weights grow.  Near
equilibrium (the f″ term, proportional to ε_{l+1}, dropped) that Hessian is
the Gauss-Newton matrix JᵀJ of the error vector ε = (ε_1, …, ε_L) in the
hidden nodes, with diagonal blocks

    H_ll = I + φ'_{l+1}(x_l) W_{l+1}ᵀ S_{l+1} W_{l+1} φ'_{l+1}(x_l) ⪯ D_l I,
    D_l  = 1 + s² h_{l+1} ‖W_{l+1}‖₂²,

where s = sup |f'| (1 for tanh, relu and linear, ¼ for sigmoid), S_{l+1} =
I (hidden, h = 1) or the output energy's curvature in μ_L: I/Σ_L for MSE
(h = 1/Σ_L) and (diag p − p pᵀ)/Σ_L ⪯ I/(2Σ_L) for softmax p (h = 1/(2Σ_L)).
The relaxation becomes

    x_l ← x_l + (γ / D_l) (−ε_l + φ'_{l+1}(x_l) ⊙ W_{l+1}ᵀ ε_{l+1}).

Each error ε_l depends on two node blocks only (x_{l−1} through μ_l, and
x_l), and the columns of J belonging to x_l have norm² ≤ D_l, so the
preconditioned Hessian D^{-1/2} JᵀJ D^{-1/2} has eigenvalues ≤ 2 (by
Cauchy-Schwarz over the two blocks per row): every γ < 1 is a stable step
on this quadratic model of F, whatever the size of W.  The bound takes f′ at
its largest, so where units saturate (f′ ≪ s) the steps are smaller than
needed and the relaxation wants more of them than a well-chosen fixed γ
would.  ‖W_{l+1}‖₂ is computed once per batch (the weights do not change
during the relaxation).

``fixed_prediction=True`` is the fixed-prediction assumption (Millidge,
Tschantz & Buckley 2022, Neural Computation 34:1329): predictions μ_l and
the derivatives φ' stay at their feed-forward values during inference and
the update reads the feed-forward φ_l(a_{l-1}); at equilibrium the errors
then equal backprop's exactly.

The relaxation is a loop inside the rule's ``end`` (the engine's one step
is the feed-forward sweep that initialises it); it uses explicit f' and no
autograd graph.  It needs the MSE or CrossEntropy loss and an MLP whose
activation has a derivative: tanh, sigmoid, linear or relu (relu' = 1[a > 0]).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .. import _checks
from ..losses import MSE, CrossEntropy
from ..models.base import Model
from ..models.mlp import MLP, MLPLocals
from .base import Rule, accumulate_grad


def _tanh_prime(a: torch.Tensor) -> torch.Tensor:
    return 1.0 - torch.tanh(a) ** 2


def _sigmoid_prime(a: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(a)
    return s * (1.0 - s)


def _relu_prime(a: torch.Tensor) -> torch.Tensor:
    return (a > 0).to(a.dtype)


def _linear_prime(a: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(a)


#: f' for every activation predictive coding can relax through
ACTIVATION_DERIVATIVES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": _tanh_prime, "sigmoid": _sigmoid_prime, "relu": _relu_prime, "linear": _linear_prime}

#: sup |f'| of each activation, for the curvature bound of ``curvature_step``
SLOPE_BOUNDS: dict[str, float] = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "linear": 1.0}


class PredictiveCoding(Rule):
    """Predictive coding: relax value nodes on F = ½Σ‖ε_l‖², then ΔW_l = ε_l φ_l(x_{l-1})ᵀ.

    ``n_inference``: relaxation steps (≥ 1); ``inference_rate``: step size γ
    in (0, 1]; ``output_variance``: Σ_L > 0 (large values bring the update
    closer to backprop); ``fixed_prediction``: hold predictions at their
    feed-forward values (exact backprop at equilibrium); ``curvature_step``:
    layer l steps γ / (1 + s² h ‖W_{l+1}‖₂²), stable for every γ < 1 however
    large the weights grow (see the module docstring).
    """

    name = "predictive-coding"
    model_kinds = ("feedforward",)

    def __init__(self, n_inference: int = 100, inference_rate: float = 0.1,
                 output_variance: float = 1.0, fixed_prediction: bool = False,
                 curvature_step: bool = False) -> None:
        super().__init__()
        self.n_inference = _checks.positive_int("n_inference", n_inference)
        self.inference_rate = _checks.positive("inference_rate", inference_rate)
        if self.inference_rate > 1.0:
            raise ValueError(f"inference_rate must be in (0, 1] (larger steps make the relaxation diverge), "
                             f"got {inference_rate}")
        self.fixed_prediction = _checks.boolean("fixed_prediction", fixed_prediction)
        self.output_variance = _checks.positive("output_variance", output_variance)
        self.curvature_step = _checks.boolean("curvature_step", curvature_step)
        self._locals: list[MLPLocals] = []
        self._categorical = False

    def alternative_hint(self, model: Model) -> str:
        return "; use cl.rules.BPTT() for recurrent or spiking models"

    def attach(self, model: Model) -> None:
        super().attach(model)
        if not isinstance(model, MLP):
            raise TypeError(f"PredictiveCoding trains cl.models.MLP networks only, got {type(model).__name__}; "
                            "train it with cl.rules.BPTT() instead")
        unknown = [name for name in model.activations if name not in ACTIVATION_DERIVATIVES]
        if unknown:
            raise ValueError(
                f"PredictiveCoding needs the activation's derivative f', but {type(model).__name__} uses "
                f"{unknown[0]!r}; accepted activations: {', '.join(ACTIVATION_DERIVATIVES)}")

    def begin(self, model: Model, x: torch.Tensor, target: Any, loss: Any) -> None:
        super().begin(model, x, target, loss)
        if not isinstance(loss, (MSE, CrossEntropy)):
            raise TypeError("PredictiveCoding needs an output energy for the loss: pass loss=cl.losses.MSE() "
                            f"(the default) or cl.losses.CrossEntropy(), got {type(loss).__name__}")
        self._categorical = isinstance(loss, CrossEntropy)
        self._locals = []

    def step(self, t: int, local: MLPLocals, y_t: torch.Tensor, error_t: torch.Tensor | None) -> None:
        self._locals.append(local)

    # -- the energy and its descent ------------------------------------------------
    def _phi(self, index: int, value: torch.Tensor) -> torch.Tensor:
        """φ_l of the node below layer ``index`` (0-based): identity on the input, f elsewhere."""
        return value if index == 0 else self.model.fs[index - 1](value)

    def _phi_prime(self, index: int, value: torch.Tensor) -> torch.Tensor:
        """φ′ of hidden node x_index (1-based, as in ``_phi``)."""
        return ACTIVATION_DERIVATIVES[self.model.activations[index - 1]](value)

    def output_error(self, mu: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """ε_L = −(1/Σ_L) ∂ℓ/∂μ_L: (t − μ)/Σ_L for MSE, (onehot(t) − softmax(μ))/Σ_L for cross-entropy."""
        if self._categorical:
            pull = -torch.softmax(mu, -1)
            pull[torch.arange(mu.shape[0], device=mu.device), target] += 1.0
        else:
            pull = target - mu
        return pull / self.output_variance

    def _errors(self, nodes: list[torch.Tensor], feedforward: list[torch.Tensor],
                target: torch.Tensor) -> list[torch.Tensor]:
        """ε_l for l = 1 … L (``nodes``: the clamped input, then the hidden value nodes x_1 … x_{L-1})."""
        # μ_1 reads only the clamped input, so its feed-forward value holds throughout
        predictions = [feedforward[1]]
        for index in range(1, len(self.model.layers)):
            predictions.append(feedforward[index + 1] if self.fixed_prediction
                               else self.model.layers[index](self._phi(index, nodes[index])))
        errors = [node - mu for node, mu in zip(nodes[1:], predictions)]
        return errors + [self.output_error(predictions[-1], target)]

    def step_sizes(self) -> list[float]:
        """Step size of each hidden layer's nodes x_1 … x_{L-1}: γ, or γ / D_l with ``curvature_step``."""
        layers = self.model.layers
        if not self.curvature_step:
            return [self.inference_rate] * (len(layers) - 1)
        # node x_l's curvature carries sup f_l′² of its own activation
        slopes = [SLOPE_BOUNDS[name] ** 2 for name in self.model.activations]
        # the output energy's curvature in μ_L: I/Σ_L (MSE), at most I/(2Σ_L) (softmax cross-entropy)
        output_curvature = (0.5 if self._categorical else 1.0) / self.output_variance
        curvatures = [1.0] * (len(layers) - 2) + [output_curvature]
        norms = [float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2)) for layer in layers[1:]]
        return [self.inference_rate / (1.0 + slope * h * norm ** 2)
                for slope, h, norm in zip(slopes, curvatures, norms)]

    def relax(self, x: torch.Tensor, target: torch.Tensor,
              preactivations: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Value nodes (input, hidden) and errors ε_1 … ε_L after ``n_inference`` descent steps on F
        (input clamped, output tied to ``target``: values for MSE, class labels for cross-entropy)."""
        feedforward = [x] + preactivations
        nodes = [x] + [a.clone() for a in preactivations[:-1]]
        gammas = self.step_sizes()
        for _ in range(self.n_inference):
            errors = self._errors(nodes, feedforward, target)
            for index in range(1, len(nodes)):
                slope_at = feedforward[index] if self.fixed_prediction else nodes[index]
                feedback = errors[index] @ self.model.layers[index].weight
                nodes[index] = nodes[index] + gammas[index - 1] * (
                    -errors[index - 1] + self._phi_prime(index, slope_at) * feedback)
        return nodes, self._errors(nodes, feedforward, target)

    def end(self, outputs: torch.Tensor, target: Any, loss: torch.Tensor | None) -> None:
        if target is None:
            raise ValueError("PredictiveCoding needs a target to clamp the output to; pass target= to sim.run")
        with torch.no_grad():
            x = torch.cat([local.activities[0] for local in self._locals], dim=0)
            pre = [torch.cat(layer, dim=0) for layer in zip(*(local.preactivations for local in self._locals))]
            if self._categorical:
                # one label per trial, repeated over the steps it was stacked with
                tied = target.reshape(-1) if target.dim() == 2 else target.repeat(len(self._locals))
                per_sample = self.model.n_out / outputs.numel()
            else:
                tied = target.reshape(-1, self.model.n_out).to(x.dtype)
                per_sample = 2.0 / outputs.numel()
            nodes, errors = self.relax(x, tied, pre)
            presynaptic = [x] + pre[:-1] if self.fixed_prediction else nodes
            scale = per_sample * self.output_variance
            for index, (layer, eps) in enumerate(zip(self.model.layers, errors)):
                rate = self._phi(index, presynaptic[index])
                accumulate_grad(layer.weight, -scale * eps.T @ rate)
                accumulate_grad(layer.bias, -scale * eps.sum(0))
