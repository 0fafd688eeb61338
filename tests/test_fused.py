"""The fused multi-step LIF path equals the step-by-step reference path."""
from __future__ import annotations

import pytest
import torch

import creditlab as cl
from creditlab.models import LIFSequenceState, leaky_scan, lif_sequence

#: the fused path is checked on every device present (CUDA only when a GPU is)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

CONFIGS = [
    dict(recurrent=False),
    dict(),
    dict(adaptive_fraction=0.5),
    dict(adaptive_fraction=0.5, t_ref=3e-3),
    dict(surrogate="fast_sigmoid", t_ref=2e-3),
    dict(surrogate="arctan", recurrent=False, adaptive_fraction=1.0),
    dict(surrogate="smooth"),
]


def run_both(model: cl.models.LIF, x: torch.Tensor, target: torch.Tensor) -> list[tuple]:
    runs = []
    for fast in (True, False):
        model.zero_grad()
        sim = cl.Simulator(model, cl.rules.BPTT(), fast=fast)
        assert sim.uses_fused_path() is fast
        result = sim.run(x, target)
        runs.append((result, {n: p.grad.clone() for n, p in model.named_parameters()}))
    return runs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "lif")
def test_fused_run_equals_reference_spikes_and_gradients(config: dict, device: str) -> None:
    torch.manual_seed(0)
    model = cl.models.LIF(20, 30, 3, seed=1, w_in_gain=3.0, **config).double().to(device)
    x = torch.rand(60, 4, 20, dtype=torch.double, device=device)
    target = torch.randn(60, 4, 3, dtype=torch.double, device=device)
    (fused, g_fused), (ref, g_ref) = run_both(model, x, target)
    for name in ("v", "z", "a", "refractory"):
        assert torch.equal(getattr(fused.state, name), getattr(ref.state, name)), name
    assert 0 < float(ref.state.z.detach().mean()) < 1  # the comparison covers spiking and silent units
    torch.testing.assert_close(fused.outputs, ref.outputs, rtol=1e-12, atol=1e-12)
    for name in g_ref:
        torch.testing.assert_close(g_fused[name], g_ref[name], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_fused_spike_trains_match_reference_step_by_step_in_float32(device: str) -> None:
    torch.manual_seed(1)
    model = cl.models.LIF(16, 40, 2, seed=3, w_in_gain=2.5, adaptive_fraction=0.3).to(device)
    x = torch.rand(200, 8, 16, device=device)
    state = model.init_state(8)
    spikes = []
    with torch.no_grad():
        for x_t in x:
            _, state, local = model.step(x_t, state)
            spikes.append(local.z)
        reference = torch.stack(spikes)
        fused, _ = lif_sequence(model.input_current(x), v_th=model.v_th, alpha=model.alpha,
                                surrogate=model.surrogate, w_rec=model.recurrent_weight(),
                                beta=model.beta_vec, rho=model.rho)
    assert torch.equal(fused, reference)


def test_lif_sequence_gradient_matches_autograd_of_the_unrolled_equations() -> None:
    """Against autograd through the equations written out plainly (smooth spikes: exact derivative)."""
    torch.manual_seed(2)
    n_steps, batch, n = 25, 3, 6
    current = (torch.randn(n_steps, batch, n, dtype=torch.double) * 1.5).requires_grad_()
    w_rec = (torch.randn(n, n, dtype=torch.double) * 0.4).requires_grad_()
    beta = torch.full((n,), 0.7, dtype=torch.double)
    v0 = torch.randn(batch, n, dtype=torch.double, requires_grad=True)
    alpha, rho, v_th, slope = 0.9, 0.95, 1.2, 3.0
    spikes, end = lif_sequence(current, v_th=v_th, alpha=alpha, surrogate=cl.models.Surrogate("smooth", slope),
                               w_rec=w_rec, beta=beta, rho=rho,
                               state=LIFSequenceState(v0, torch.zeros_like(v0), torch.zeros_like(v0),
                                                      torch.zeros(batch, n, dtype=torch.int32)))
    weights = torch.randn(n_steps, batch, n, dtype=torch.double)
    grads = torch.autograd.grad((spikes * weights).sum() + end.v.sum(), (current, w_rec, v0))

    v, z, a = v0, torch.zeros_like(v0), torch.zeros_like(v0)
    total = 0
    for t in range(n_steps):
        v_new = alpha * v + current[t] + z @ w_rec.t() - v_th * z
        a = rho * a + z
        z = torch.sigmoid(slope * (v_new - v_th - beta * a) / v_th)
        v = v_new
        total = total + (z * weights[t]).sum()
    expected = torch.autograd.grad(total + v.sum(), (current, w_rec, v0))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_leaky_scan_matches_its_recursion_and_gradient() -> None:
    drive = torch.randn(30, 2, 3, dtype=torch.double, requires_grad=True)
    y0 = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d, y: leaky_scan(d, y, 0.8), (drive, y0))
    y, outs = y0, []
    for u in drive:
        y = 0.8 * y + u
        outs.append(y)
    torch.testing.assert_close(leaky_scan(drive, y0, 0.8), torch.stack(outs))


def test_engine_steps_when_per_step_locals_are_needed() -> None:
    model = cl.models.LIF(5, 8, 2, seed=0)
    assert cl.Simulator(model, cl.rules.BPTT()).uses_fused_path()
    assert cl.Simulator(model).uses_fused_path()
    assert not cl.Simulator(model, cl.rules.BPTT(), monitors=["z"]).uses_fused_path()
    with torch.no_grad():       # no graph: the step path, whose memory is flat in T
        assert not cl.Simulator(model).uses_fused_path()
        assert cl.Simulator(model, cl.rules.BPTT()).uses_fused_path()
    assert not cl.Simulator(model, cl.rules.EProp()).uses_fused_path(traces=True)
    assert not cl.Simulator(cl.models.LIF(5, 8, 2, seed=0, delays=2), cl.rules.BPTT()).uses_fused_path()
    with pytest.raises(TypeError, match="fast must be True or False"):
        cl.Simulator(model, fast="yes")


def test_continuing_a_run_from_its_state_is_the_same_in_both_paths() -> None:
    model = cl.models.LIF(6, 12, 2, seed=4, w_in_gain=3.0, adaptive_fraction=0.5, t_ref=2e-3)
    x = torch.rand(80, 3, 6)
    ends = []
    for fast in (True, False):
        sim = cl.Simulator(model, fast=fast)
        assert sim.uses_fused_path() is fast
        first = sim.run(x[:40])
        ends.append(sim.run(x[40:], state=first.state))
    assert torch.equal(ends[0].state.z, ends[1].state.z)
    assert torch.equal(ends[0].state.refractory, ends[1].state.refractory)
    torch.testing.assert_close(ends[0].outputs, ends[1].outputs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(current=torch.zeros(3, 4)), "current must have rank 3"),
    (dict(current=torch.zeros(3, 2, 4), w_rec=torch.zeros(4, 5)), "w_rec must have size 4 on axis 1"),
    (dict(current=torch.zeros(3, 2, 4), beta=torch.zeros(3)), "beta must have size 4"),
    (dict(current=torch.zeros(3, 2, 4), alpha=1.5), "alpha"),
    (dict(current=torch.zeros(3, 2, 4), n_refractory=-1), "n_refractory must be >= 0"),
    (dict(current=torch.zeros(3, 2, 4), surrogate="box"), "surrogate"),
])
def test_lif_sequence_names_the_bad_argument(kwargs: dict, match: str) -> None:
    kwargs.setdefault("alpha", 0.9)
    with pytest.raises((ValueError, TypeError), match=match):
        lif_sequence(**kwargs)


def test_chunked_pseudo_derivative_gives_the_same_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """ψ evaluated in chunks of 7 steps (boundaries inside the run) equals one pass over all steps."""
    import creditlab.models.fused as fused
    torch.manual_seed(5)
    model = cl.models.LIF(10, 12, 2, seed=2, w_in_gain=3.0, adaptive_fraction=0.5, t_ref=2e-3).double()
    x = torch.rand(50, 3, 10, dtype=torch.double)
    target = torch.randn(50, 3, 2, dtype=torch.double)
    grads = []
    for elements in (10 ** 9, 7 * 3 * 12):
        monkeypatch.setattr(fused, "PSI_CHUNK_ELEMENTS", elements)
        model.zero_grad()
        cl.Simulator(model, cl.rules.BPTT()).run(x, target)
        grads.append([p.grad.clone() for p in model.parameters()])
    for whole, chunked in zip(*grads):
        torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-14)
