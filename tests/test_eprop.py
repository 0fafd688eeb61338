"""e-prop (Bellec et al. 2020) against independent references.

1. Without recurrent weights e-prop with the reset in the neuron Jacobian is
   the exact surrogate gradient (``cl.rules.exact_gradient``, BPTT).
2. With recurrence it equals Bellec's factorised expression
   Σ_t (∂L/∂z_j^t)_direct e_ji^t, evaluated here by autograd on a separate
   forward pass in which presynaptic recurrent spikes (and, for the paper's
   rule, the reset) are detached, so autograd follows only neuron j's own
   dynamics and the readout: exactly the truncated quantity.
3. Random feedback learns; traces are recordable; bad models are refused.
"""
from __future__ import annotations

import pytest
import torch

import creditlab as cl
from creditlab.losses import MSE, WindowCrossEntropy
from creditlab.models.lif import LIF
from creditlab.rules.alignment import rule_estimate


def _lif(recurrent: bool, adaptive_fraction: float, t_ref: float = 0.0, seed: int = 0) -> LIF:
    net = LIF(n_in=6, n_rec=8, n_out=3, adaptive_fraction=adaptive_fraction, tau_a=50e-3,
              beta=0.5, v_th=0.5, t_ref=t_ref, recurrent=recurrent, w_in_gain=3.0,
              w_rec_gain=1.5, seed=seed)
    return net.double()


def _data(n_steps: int = 60, batch: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n_steps, batch, 6, generator=gen) < 0.2).double()
    y = torch.randn(n_steps, batch, 3, generator=gen, dtype=torch.float64)
    return x, y


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def truncated_reference(net: LIF, x: torch.Tensor, target, loss, reset_gradient: bool,
                        rate_target: float = 0.0, rate_reg: float = 0.0,
                        feedback: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Σ_t (∂L/∂z^t)_direct e^t by autograd: presynaptic recurrent spikes detached,
    the reset detached unless ``reset_gradient``; adaptation and readout kept.

    With ``feedback`` B the readout's value is unchanged but its derivative with
    respect to z is Bᵀ instead of W_out (the learning signal of random e-prop)."""
    params = {n: p for n, p in net.named_parameters()}
    batch = x.shape[1]
    v = torch.zeros(batch, net.n_rec, dtype=x.dtype)
    a = torch.zeros_like(v)
    z = torch.zeros_like(v)
    refractory = torch.zeros(batch, net.n_rec, dtype=torch.int32)
    y = torch.zeros(batch, net.n_out, dtype=x.dtype)
    outputs, spikes = [], []
    for x_t in x:
        current = x_t @ net.w_in.t()
        if net.w_rec is not None:
            current = current + z.detach() @ (net.w_rec * net.rec_mask).t()
        reset = z if reset_gradient else z.detach()
        v = net.alpha * v + current - net.v_th * reset
        a = net.rho * a + z
        free = refractory == 0
        z = net.surrogate.spike((v - net.v_th - net.beta_vec * a) / net.v_th) * free
        if net.n_refractory:
            refractory = torch.where(z > 0, net.n_refractory - 1, (refractory - 1).clamp(min=0))
        if feedback is None:
            drive = z @ net.w_out.t()
        else:
            routed = z @ feedback
            drive = z.detach() @ net.w_out.t() + routed - routed.detach()
        y = net.kappa * y + drive + net.b_out
        outputs.append(y)
        spikes.append(z)
    total = loss(torch.stack(outputs), target)
    if rate_reg:
        rates = torch.stack(spikes).mean((0, 1)) / net.dt
        total = total + rate_reg * ((rates - rate_target) ** 2).sum()
    grads = torch.autograd.grad(total, list(params.values()))
    return {n: g for n, g in zip(params, grads)}


# -- 1. exact without recurrence -------------------------------------------------------
@pytest.mark.parametrize("adaptive_fraction,t_ref", [(0.0, 0.0), (0.5, 0.0), (1.0, 3e-3)])
def test_exact_gradient_without_recurrence(adaptive_fraction: float, t_ref: float) -> None:
    net = _lif(recurrent=False, adaptive_fraction=adaptive_fraction, t_ref=t_ref)
    x, y = _data()
    estimate = rule_estimate(net, cl.rules.EProp("symmetric", reset_gradient=True), x, y)
    exact = cl.rules.exact_gradient(net, x, y)
    assert set(estimate) == {"w_in", "w_out", "b_out"}
    assert float(exact["w_in"].abs().max()) > 1e-6  # the network spikes, so this is not trivial
    for name in estimate:
        assert _relative_error(estimate[name], exact[name]) < 1e-6, name


def test_paper_rule_without_recurrence_is_bptt_with_reset_detached() -> None:
    net = _lif(recurrent=False, adaptive_fraction=0.5)
    x, y = _data()
    estimate = rule_estimate(net, cl.rules.EProp("symmetric"), x, y)
    reference = truncated_reference(net, x, y, MSE(), reset_gradient=False)
    for name in estimate:
        assert _relative_error(estimate[name], reference[name]) < 1e-6, name


def test_rate_rnn_without_recurrence_is_exact() -> None:
    net = cl.models.RateRNN(n_in=3, n_rec=10, n_out=2, tau=5e-3, dt=1e-3, g=0.0, seed=0).double()
    torch.nn.init.normal_(net.b, std=0.3)
    gen = torch.Generator().manual_seed(0)
    # 40 steps: one full chunk of summed gradient terms (GRAD_CHUNK = 32) and a partial one
    assert 32 == cl.rules.eprop.GRAD_CHUNK
    x = torch.randn(40, 5, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(40, 5, 2, generator=gen, dtype=torch.float64)
    estimate = rule_estimate(net, cl.rules.EProp("symmetric"), x, y)
    exact = cl.rules.exact_gradient(net, x, y)
    assert set(estimate) == set(exact)
    for name in exact:
        assert _relative_error(estimate[name], exact[name]) < 1e-6, name


# -- 2. Bellec's truncated factorisation with recurrence ------------------------------
@pytest.mark.parametrize("adaptive_fraction,reset_gradient,t_ref",
                         [(0.0, False, 0.0), (0.5, False, 0.0), (0.5, True, 2e-3), (1.0, False, 2e-3)])
def test_matches_truncated_factorisation_with_recurrence(adaptive_fraction: float, reset_gradient: bool,
                                                         t_ref: float) -> None:
    net = _lif(recurrent=True, adaptive_fraction=adaptive_fraction, t_ref=t_ref)
    x, y = _data()
    estimate = rule_estimate(net, cl.rules.EProp("symmetric", reset_gradient=reset_gradient), x, y)
    reference = truncated_reference(net, x, y, MSE(), reset_gradient)
    exact = cl.rules.exact_gradient(net, x, y)
    for name in ("w_in", "w_rec", "w_out", "b_out"):
        assert _relative_error(estimate[name], reference[name]) < 1e-6, name
    # recurrence makes the truncation an approximation: e-prop is not BPTT here
    assert _relative_error(estimate["w_rec"], exact["w_rec"]) > 1e-3


def test_cross_entropy_window_and_rate_regulariser_match_reference() -> None:
    net = _lif(recurrent=True, adaptive_fraction=0.5)
    x, _ = _data()
    labels = torch.tensor([0, 2, 1, 2])
    loss = WindowCrossEntropy(window=20)
    rule = cl.rules.EProp("symmetric", rate_target=10.0, rate_reg=1e-4)
    estimate = rule_estimate(net, rule, x, labels, loss)
    reference = truncated_reference(net, x, labels, loss, False, rate_target=10.0, rate_reg=1e-4)
    for name in ("w_in", "w_rec", "w_out", "b_out"):
        assert _relative_error(estimate[name], reference[name]) < 1e-6, name
    assert rule.rate_penalty > 0


def test_random_feedback_matches_reference_with_feedback_readout() -> None:
    net = _lif(recurrent=True, adaptive_fraction=0.5)
    x, y = _data()
    rule = cl.rules.EProp("random", seed=3)
    estimate = rule_estimate(net, rule, x, y)
    reference = truncated_reference(net, x, y, MSE(), False, feedback=rule.feedback_matrix)
    for name in ("w_in", "w_rec", "w_out", "b_out"):
        assert _relative_error(estimate[name], reference[name]) < 1e-6, name
    symmetric = rule_estimate(net, cl.rules.EProp("symmetric"), x, y)
    assert _relative_error(estimate["w_rec"], symmetric["w_rec"]) > 1e-2
    assert _relative_error(estimate["w_out"], symmetric["w_out"]) < 1e-12
    again = cl.rules.EProp("random", seed=3)
    cl.Simulator(net, again)
    assert torch.equal(again.feedback_matrix, rule.feedback_matrix)


# -- 3. learning, monitors, refusals ---------------------------------------------------
def test_random_feedback_learns_a_small_pattern() -> None:
    gen = torch.Generator().manual_seed(0)
    n_steps = 30
    x = (torch.rand(n_steps, 1, 20, generator=gen) < 0.2).float().expand(-1, 2, -1)
    time_axis = torch.linspace(0, 1, n_steps)
    target = torch.stack([torch.sin(2 * torch.pi * time_axis), torch.cos(2 * torch.pi * time_axis)], -1)
    target = (0.5 * target).unsqueeze(1).expand(-1, 2, -1)
    net = cl.models.LIF(n_in=20, n_rec=30, n_out=2, adaptive_fraction=0.3, tau_a=0.2, v_th=0.6,
                        w_in_gain=2.0, seed=0)
    sim = cl.Simulator(net, cl.rules.EProp("random", seed=1, rate_target=20.0, rate_reg=1e-5))
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    losses = []
    for _ in range(20):
        losses.append(float(sim.run(x, target).loss))
        opt.step()
        opt.zero_grad()
    assert sum(losses[-5:]) / 5 < 0.2 * losses[0]


def test_rate_rnn_eprop_learns() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, 2, generator=gen)
    target = 0.5 * torch.tanh(x.cumsum(0) * 0.2)[..., :1]   # a leaky running sum of channel 0
    net = cl.models.RateRNN(n_in=2, n_rec=32, n_out=1, tau=10e-3, dt=1e-3, g=1.2, seed=0)
    sim = cl.Simulator(net, cl.rules.EProp("random", seed=0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = float(sim.run(x, target).loss)
    for _ in range(30):
        sim.run(x, target)
        opt.step()
        opt.zero_grad()
    assert float(sim.run(x, target).loss) < 0.5 * first


def test_traces_are_recordable_through_monitors() -> None:
    net = _lif(recurrent=True, adaptive_fraction=0.5)      # neurons 4..7 are ALIF
    x, y = _data(n_steps=30, batch=2)
    monitors = ["eligibility", "eps_a", "eligibility_in", "learning_signal", "psi", "spikes"]
    record = cl.Simulator(net, cl.rules.EProp("symmetric"), monitors).run(x, y).record
    assert record.eligibility.shape == (30, 2, 8, 8)
    assert record.eligibility_in.shape == (30, 2, 8, 6)
    assert record.learning_signal.shape == (30, 2, 8)
    assert bool((record.eligibility != 0).any())
    assert bool((record.eps_a[:, :, :4] == 0).all())     # plain LIF rows: no adaptation
    # e_ji = ψ_j (z̄_i − β_j ε^a_ji), with z̄ rebuilt from the recorded spikes
    spikes = record.spikes.double()
    zbar = torch.zeros_like(spikes)
    for t in range(1, 30):
        zbar[t] = net.alpha * zbar[t - 1] + spikes[t - 1]
    expected = record.psi.unsqueeze(-1) * (zbar.unsqueeze(2) - net.beta_vec[:, None] * record.eps_a)
    assert torch.allclose(record.eligibility, expected)
    # a synapse selection records the same values
    synapses = [(7, 1), (2, 5)]
    picked = cl.Simulator(net, cl.rules.EProp("symmetric"),
                          [cl.Monitor("eligibility", synapses=synapses)]).run(x, y).record
    assert torch.equal(picked.eligibility, record.eligibility[:, :, [7, 2], [1, 5]])


def test_recording_traces_leaves_the_gradient_unchanged() -> None:
    # monitors read the traces every step, so the chunked compiled pass runs one step at a time
    net = _lif(recurrent=True, adaptive_fraction=0.5)
    x, y = _data(n_steps=29, batch=3)
    plain = cl.rules.rule_estimate(net, cl.rules.EProp("symmetric"), x, y)
    sim = cl.Simulator(net, cl.rules.EProp("symmetric"), ["eligibility", "eps_a"])
    sim.run(x, y)
    for name, param in net.named_parameters():
        assert torch.equal(param.grad, plain[name]), name


def test_adaptive_feedback_follows_kolen_pollack() -> None:
    """With SGD(lr=η, weight_decay=λ) on the readout and feedback_lr=η, feedback_decay=ηλ,
    B − W_outᵀ shrinks by (1 − ηλ) every run."""
    net = _lif(recurrent=True, adaptive_fraction=0.5)
    x, y = _data(n_steps=30)
    lr, decay = 0.05, 2.0
    rule = cl.rules.EProp("adaptive", seed=0, feedback_lr=lr, feedback_decay=lr * decay)
    sim = cl.Simulator(net, rule)
    opt = torch.optim.SGD([net.w_out], lr=lr, weight_decay=decay)
    gap0 = (rule.feedback_matrix - net.w_out.detach().t()).norm()
    for _ in range(5):
        sim.run(x, y)
        opt.step()
        for p in net.parameters():
            p.grad = None
    gap = (rule.feedback_matrix - net.w_out.detach().t()).norm()
    assert abs(float(gap / gap0) - (1 - lr * decay) ** 5) < 1e-9


def test_memory_does_not_grow_with_run_length() -> None:
    net = _lif(recurrent=True, adaptive_fraction=0.5)
    rule = cl.rules.EProp("symmetric")
    sim = cl.Simulator(net, rule)
    sizes = []
    # both runs longer than the rule's chunks of pending steps (TRACE_CHUNK, GRAD_CHUNK)
    for n_steps in (40, 120):
        x, y = _data(n_steps=n_steps)
        result = sim.run(x, y)
        assert not result.outputs.requires_grad
        sizes.append(sum(v.numel() for v in rule._t.values() if isinstance(v, torch.Tensor)))
    assert sizes[0] == sizes[1]


def test_attach_refuses_unsupported_models() -> None:
    with pytest.raises(TypeError, match="Backprop"):
        cl.Simulator(cl.models.MLP([4, 3, 2]), cl.rules.EProp())
    delayed = cl.models.LIF(n_in=3, n_rec=5, n_out=1, delays=3, seed=0)
    with pytest.raises(ValueError, match="SurrogateGradient"):
        cl.Simulator(delayed, cl.rules.EProp())
    rate = cl.models.RateRNN(n_in=2, n_rec=4, n_out=1)
    with pytest.raises(ValueError, match="rate_reg"):
        cl.Simulator(rate, cl.rules.EProp(rate_target=5.0, rate_reg=0.1))


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="feedback"):
        cl.rules.EProp("transpose")
    with pytest.raises(ValueError, match="rate_reg"):
        cl.rules.EProp(rate_reg=-1.0)
    with pytest.raises(ValueError, match="rate_target"):
        cl.rules.EProp(rate_reg=0.1)
    with pytest.raises(TypeError, match="trace_thread"):
        cl.rules.EProp(trace_thread="yes")
    with pytest.raises(TypeError, match="seed"):
        cl.rules.EProp("random", seed=1.5)
    with pytest.raises(TypeError, match="loss"):
        net = _lif(recurrent=True, adaptive_fraction=0.0)
        x, y = _data(n_steps=5)
        cl.Simulator(net, cl.rules.EProp()).run(x, y, loss=lambda out, tgt: ((out - tgt) ** 2).mean())
    assert cl.rules.RULES["eprop"] is cl.rules.EProp


# -- reproduction (slow) ---------------------------------------------------------------
@pytest.mark.slow
def test_random_eprop_solves_evidence_accumulation(load_example) -> None:
    """Bellec et al. 2020 Fig. 3 on the shortened 300-step trial: ≥ 90 % accuracy
    on 512 fresh trials after 600 iterations (measured: 93.2 %, about 10 minutes)."""
    result = load_example("eprop_evidence").train_evidence(steps=600, batch=32, trial="tiny", seed=0, rate_reg=5e-6)
    assert result["final_accuracy"] >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_eprop_pattern_generation_within_twice_bptt(seed: int, load_example) -> None:
    """Bellec et al. 2020 Fig. 2 on a 300 ms pattern, 200 Adam iterations each."""
    example = load_example("eprop_evidence")
    eprop = example.train_pattern("eprop", steps=200, duration=0.3, seed=seed)
    bptt = example.train_pattern("bptt", steps=200, duration=0.3, seed=seed)
    assert eprop["final_mse"] < 0.05 * eprop["initial_mse"]
    assert eprop["final_mse"] <= 2.0 * bptt["final_mse"]
