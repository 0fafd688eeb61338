"""Node perturbation for recurrent networks: unbiasedness, variance law, learning, Miconi's DNMS."""
from __future__ import annotations

import pytest
import torch

import creditlab as cl
from creditlab.rules.node_perturbation import per_trial_losses

PERTURBED = ("w_rec", "w_in", "b")


def small_trial(n_rec: int, seed: int, n_steps: int = 10) -> tuple[cl.models.RateRNN, torch.Tensor, torch.Tensor]:
    net = cl.models.RateRNN(2, n_rec, 1, tau=3e-3, dt=1e-3, seed=seed).double()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_steps, 1, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(n_steps, 1, 1, generator=gen, dtype=torch.float64)
    return net, x, y


def repeat(x: torch.Tensor, k: int) -> torch.Tensor:
    return x.expand(x.shape[0], k, x.shape[2])


def node_gradient_and_fan(net: cl.models.RateRNN, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """‖G‖² with G_i^t = ∂L/∂ξ_i^t (autograd through zero noise) and ‖A‖_F² = N Σ_t ‖pre^t‖²."""
    noise = [torch.zeros(1, net.n_units, dtype=x.dtype, requires_grad=True) for _ in range(x.shape[0])]
    state, outputs, pre_sq = net.init_state(1, dtype=x.dtype), [], 0.0
    for t in range(x.shape[0]):
        pre_sq += float((state.r.detach() ** 2).sum() + (x[t] ** 2).sum() + 1.0)
        out, state, _ = net.step(x[t], state, None, noise[t])
        outputs.append(out)
    grads = torch.autograd.grad(cl.losses.MSE()(torch.stack(outputs), y), noise)
    return sum(float((g ** 2).sum()) for g in grads), net.n_units * pre_sq


def test_exact_mode_is_unbiased():
    """Mean of K = 4000 single-trial estimates (batched as copies of one trial) vs autograd."""
    net, x, y = small_trial(8, seed=1)
    exact = cl.rules.exact_gradient(net, x, y)
    rule = cl.rules.NodePerturbation(sigma=1e-3, mode="exact", seed=0)
    estimate = cl.rules.rule_estimate(net, rule, repeat(x, 4000), repeat(y, 4000))
    perturbative = cl.rules.alignment({n: estimate[n] for n in PERTURBED}, exact)
    assert perturbative.cosine >= 0.95, perturbative
    for name in PERTURBED:
        assert perturbative.per_parameter[name] >= 0.9, perturbative
    # the readout's delta rule along the clean trial is the exact readout gradient
    for name in ("w_out", "b_out"):
        torch.testing.assert_close(estimate[name], exact[name], rtol=1e-9, atol=1e-12)
    # p.grad is the batch mean of the per-trial estimates
    trials = rule.trial_estimates()
    for name in PERTURBED:
        torch.testing.assert_close(trials[name].mean(0), estimate[name])


def test_variance_grows_with_perturbed_units_as_derived():
    """Mean squared error of the single-trial estimator against the exact gradient.

    With Gaussian ξ ~ N(0, σ² I) on the M = N·T unit-steps and L̃ − L = Gᵀξ to first
    order (G_i^t = ∂L/∂ξ_i^t), the node estimate ĝ_node = (Gᵀξ) ξ / σ² has
    E[ĝ_node ĝ_nodeᵀ] = 2 G Gᵀ + ‖G‖² I (Isserlis), so Cov = G Gᵀ + ‖G‖² I.  The weight
    estimate is ĝ = A ĝ_node with (A G)_ij = Σ_t G_i^t pre_j^t, hence

        E‖ĝ − g‖² = tr(A Cov Aᵀ) = ‖g‖² + ‖G‖² ‖A‖_F²,   ‖A‖_F² = N Σ_t ‖pre^t‖²

    (pre^t = (r^t, u^{t+1}, 1) for W_rec, W_in, b).  For one linear layer this is the
    familiar (N + 1)‖g‖².  Tested for N = 4, 16, 64: each measured value within 10 % of
    the prediction, and the error grows with N by the predicted ratio.
    """
    measured, predicted = {}, {}
    for n_rec, trials in ((4, 4000), (16, 4000), (64, 2000)):
        net, x, y = small_trial(n_rec, seed=n_rec)
        exact = cl.rules.exact_gradient(net, x, y)
        g_sq, fan = node_gradient_and_fan(net, x, y)
        net.w_out.requires_grad_(False)
        net.b_out.requires_grad_(False)
        rule = cl.rules.NodePerturbation(sigma=1e-4, mode="exact", seed=n_rec)
        cl.Simulator(net, rule).run(repeat(x, trials), repeat(y, trials))
        est = rule.trial_estimates()
        measured[n_rec] = float(sum(((est[n] - exact[n]) ** 2).flatten(1).sum(1) for n in PERTURBED).mean())
        predicted[n_rec] = sum(float((exact[n] ** 2).sum()) for n in PERTURBED) + g_sq * fan
        assert measured[n_rec] == pytest.approx(predicted[n_rec], rel=0.10), (n_rec, measured, predicted)
    assert measured[4] < measured[16] < measured[64]
    ratio_measured, ratio_predicted = measured[64] / measured[4], predicted[64] / predicted[4]
    assert ratio_measured == pytest.approx(ratio_predicted, rel=0.15)


def pattern_batch(gen: torch.Generator, batch: int = 32, n_steps: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel c ∈ {0, 1} on for the whole trial; answer +0.5 for c = 0, −0.5 for c = 1."""
    c = torch.randint(0, 2, (batch,), generator=gen)
    x = torch.zeros(n_steps, batch, 2)
    x[:, torch.arange(batch), c] = 1.0
    y = torch.where(c == 0, 0.5, -0.5).view(1, batch, 1).expand(n_steps, batch, 1).contiguous()
    return x, y


@pytest.mark.parametrize("eligibility, noise, sigma, p_perturb, lr",
                         [("linear", "gaussian", 0.05, 1.0, 0.05),    # Fiete & Seung: dense Gaussian noise
                          ("cubic", "uniform", 4.0, 0.02, 0.5)])      # Miconi: sparse, large perturbations
def test_reward_mode_learns_from_reward_alone(eligibility, noise, sigma, p_perturb, lr):
    """Frozen readout: only the perturbative estimate trains W_rec, W_in, b.

    One run's outcome depends on its noise draws, so three noise seeds are
    trained: every one must improve, and on average the loss must halve.
    """
    ratios = []
    for seed in range(3):
        net = cl.models.RateRNN(2, 16, 1, tau=5e-3, dt=1e-3, seed=0)
        net.w_out.requires_grad_(False)
        net.b_out.requires_grad_(False)
        rule = cl.rules.NodePerturbation(sigma=sigma, mode="reward", baseline_decay=0.9, seed=seed,
                                         eligibility=eligibility, noise=noise, p_perturb=p_perturb,
                                         trial_type="input")
        sim = cl.Simulator(net, rule, monitors=("eligibility",))
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=lr)
        x_eval, y_eval = pattern_batch(torch.Generator().manual_seed(99))
        with torch.no_grad():
            before = float(cl.losses.MSE()(net(x_eval), y_eval))
        gen = torch.Generator().manual_seed(0)
        for _ in range(100):
            x, y = pattern_batch(gen)
            result = sim.run(x, y)
            opt.step()
            opt.zero_grad()
        with torch.no_grad():
            ratios.append(float(cl.losses.MSE()(net(x_eval), y_eval)) / before)
        assert result.record.eligibility.shape == (20, 32, 16, 16)
        assert len(rule.baselines) == 2  # one per input pattern
    assert max(ratios) < 1.0, ratios
    assert sum(ratios) / len(ratios) < 0.5, ratios


def test_lif_exact_mode_aligns_with_surrogate_gradient():
    """On a LIF network the estimate targets the noise-smoothed loss; it agrees in direction with BPTT-ψ."""
    torch.manual_seed(0)
    net = cl.models.LIF(3, 12, 1, dt=1e-3, tau_m=10e-3, delays=2, w_in_gain=3.0, seed=0).double()
    x = (torch.rand(15, 1, 3, dtype=torch.float64) < 0.3).double()
    y = torch.full((15, 1, 1), 0.5, dtype=torch.float64)
    rule = cl.rules.NodePerturbation(sigma=0.3, mode="exact", seed=0)
    est = cl.rules.rule_estimate(net, rule, repeat(x, 3000), repeat(y, 3000))
    assert torch.all(est["w_rec"].diagonal() == 0)  # no autapses
    reference = cl.rules.exact_gradient(net, x, y)
    per = cl.rules.alignment({n: est[n] for n in ("w_in", "w_rec")}, reference).per_parameter
    assert per["w_in"] > 0.8 and per["w_rec"] > 0.8, per


def test_cubic_eligibility_is_the_sum_of_cubed_fluctuations():
    """Miconi's E_ij = Σ_t (r_j^t (h_i^{t+1} − h̄_i^t))³, h̄ ← a h̄ + (1 − a) h, recomputed from h and r.

    150 steps span several of the rule's summation blocks; the run with monitors sums step by
    step, the run without sums block by block, and both must equal the direct sum.
    """
    def rule() -> cl.rules.NodePerturbation:
        return cl.rules.NodePerturbation(sigma=4.0, eligibility="cubic", noise="uniform", p_perturb=0.05,
                                         seed=3, fluctuation_decay=0.2)

    net = cl.models.RateRNN(2, 12, 1, tau=5e-3, dt=1e-3, seed=0).double()
    x = torch.randn(150, 3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.zeros(150, 3, 1, dtype=torch.float64)
    watched = rule()
    record = cl.Simulator(net, watched, monitors=("h", "r")).run(x, y).record
    r_prev = torch.cat([torch.zeros(1, 3, 12, dtype=torch.float64), record.r[:-1]])
    h_bar, expected = torch.zeros(3, 12, dtype=torch.float64), torch.zeros(3, 12, 12, dtype=torch.float64)
    for t in range(150):
        expected += (r_prev[t].unsqueeze(1) * (record.h[t] - h_bar).unsqueeze(2)) ** 3
        h_bar = 0.2 * h_bar + 0.8 * record.h[t]
    blockwise = rule()
    cl.Simulator(net, blockwise).run(x, y)
    for traces in (watched.traces(), blockwise.traces()):
        torch.testing.assert_close(traces["eligibility"], expected)


def test_baseline_scaling_multiplies_each_trial_by_its_baseline():
    """Miconi's code: ΔW ∝ (R − R̄) |R̄| E; same noise and losses as the unscaled rule, scaled per trial."""
    net = cl.models.RateRNN(2, 8, 1, tau=5e-3, dt=1e-3, seed=0)
    net.w_out.requires_grad_(False)
    net.b_out.requires_grad_(False)
    x, y = pattern_batch(torch.Generator().manual_seed(1), batch=6)
    rules = [cl.rules.NodePerturbation(sigma=4.0, eligibility="cubic", noise="uniform", p_perturb=0.05, seed=0,
                                       trial_type="input", baseline_scaling=scaled) for scaled in (False, True)]
    for r in rules:
        sim = cl.Simulator(net, r)
        sim.run(x, y)          # first batch: baselines start at the batch's mean rewards
        net.zero_grad()
        before = dict(r.baselines)
        sim.run(x, y)
        net.zero_grad()
    keys = rules[0]._trial_keys()
    scale = torch.tensor([abs(before[k]) for k in keys]).view(-1, 1, 1)
    plain, scaled = rules[0].trial_estimates(), rules[1].trial_estimates()
    assert scale.min() > 0
    torch.testing.assert_close(scaled["w_rec"], plain["w_rec"] * scale)
    with pytest.raises(ValueError, match="baseline_scaling"):
        cl.rules.NodePerturbation(mode="exact", baseline_scaling=True)


def test_trial_types_keep_separate_baselines():
    rule = cl.rules.NodePerturbation(mode="reward", baseline_decay=0.5, trial_type=lambda x, t: [0, 1, 0])
    rule._x, rule._target = torch.zeros(1, 3, 1), None
    adv = rule._advantages(torch.tensor([1.0, 4.0, 3.0]))
    torch.testing.assert_close(adv, torch.tensor([-1.0, 0.0, 1.0]))   # new types start at their batch mean
    assert rule.baselines == {0: pytest.approx(0.5 * (0.5 * 2 + 0.5 * 1) + 0.5 * 3), 1: pytest.approx(4.0)}


def test_per_trial_losses_average_to_the_batch_loss():
    out, tgt = torch.randn(6, 5, 2), torch.randn(6, 5, 2)
    values = per_trial_losses(cl.losses.MSE(), out, tgt)
    assert values.shape == (5,)
    torch.testing.assert_close(values.mean(), cl.losses.MSE()(out, tgt))


def test_bad_arguments_and_models_are_refused():
    with pytest.raises(ValueError, match="mode"):
        cl.rules.NodePerturbation(mode="supervised")
    with pytest.raises(ValueError, match="sigma"):
        cl.rules.NodePerturbation(sigma=0.0)
    with pytest.raises(ValueError, match="eligibility"):
        cl.rules.NodePerturbation(mode="exact", eligibility="cubic")
    with pytest.raises(ValueError, match="trial_type"):
        cl.rules.NodePerturbation(trial_type="color")
    with pytest.raises(ValueError, match="p_perturb"):
        cl.rules.NodePerturbation(p_perturb=0.0)
    with pytest.raises(TypeError, match="SingleStepNodePerturbation"):
        cl.Simulator(cl.models.MLP([3, 4, 2]), cl.rules.NodePerturbation())
    with pytest.raises(ValueError, match="cubic"):
        cl.Simulator(cl.models.LIF(2, 4, 1), cl.rules.NodePerturbation(eligibility="cubic"))
    net = cl.models.RateRNN(2, 4, 1)
    sim = cl.Simulator(net, cl.rules.NodePerturbation())
    with pytest.raises(ValueError, match="target"):
        sim.run(torch.zeros(3, 2, 2))
    with pytest.raises(TypeError, match="TimeLocalLoss"):
        sim.run(torch.zeros(3, 2, 2), torch.zeros(3, 2, 1), loss=lambda o, t: ((o - t) ** 2).mean())
    assert cl.rules.RULES["node-perturbation"] is cl.rules.NodePerturbation


def test_dnms_task_layout():
    task = cl.tasks.DelayedNonMatch(seed=3)
    assert cl.tasks.TASKS["dnms"] is cl.tasks.DelayedNonMatch
    x, y = task.sample(64)
    assert x.shape == (1000, 64, 2) and y.shape == (1000, 64, 1)
    kinds = task.trial_type(x, y)
    first, second = kinds // 2, kinds % 2
    assert torch.all(x[:200].sum(-1) == 1) and torch.all(x[200:400] == 0)
    assert torch.all(x[400:600].sum(-1) == 1) and torch.all(x[600:] == 0)
    torch.testing.assert_close(y[-1, :, 0], torch.where(first != second, 1.0, -1.0))
    perfect = task.metrics(y.clone(), y)
    assert perfect["accuracy"] == 1.0 and perfect["error"] == 0.0
    with pytest.raises(ValueError, match="response"):
        cl.tasks.DelayedNonMatch(response=0.0)


@pytest.mark.slow
def test_miconi_dnms_reaches_criterion():
    """Miconi 2017 Fig. 1: 95 % of 100 successive trials correct (error < 1) with reward alone."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "miconi_dnms.py"
    spec = importlib.util.spec_from_file_location("miconi_dnms", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = example.train(trials=3000, batch=1, seed=0, log_every=10 ** 9, stop_at_criterion=True)
    assert out["reached"]["error<1"] is not None, out["errors"][-100:]
