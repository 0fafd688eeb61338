"""The compiled CPU loops (creditlab.native) equal the PyTorch step path they replace."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import creditlab as cl
from creditlab import native
from creditlab.models.cuba import CUBA
from creditlab.rules.alignment import rule_estimate

pytestmark = pytest.mark.skipif(not native.available(), reason=f"compiled loops unavailable: {native.reason()}")

#: a 500-neuron CUBA with the full network's fan-out (p · N = 80), which keeps it in the same regime
SMALL = dict(n_exc=400, n_inh=100, p=0.16)


def run_both(model: CUBA, n_steps: int, batch: int, monitors, state=None) -> tuple:
    x = torch.zeros(n_steps, batch, 0, dtype=model.dtype)
    compiled, stepped = cl.Simulator(model, monitors=monitors), cl.Simulator(model, monitors=monitors, fast=False)
    assert compiled.uses_fused_path() and not stepped.uses_fused_path()
    return compiled.run(x, state=state), stepped.run(x, state=state)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_cuba_loop_equals_stepping(dtype: torch.dtype, atol: float) -> None:
    model = CUBA(**SMALL, seed=3, dtype=dtype)
    a, b = run_both(model, 1500, 3, ("spikes", "outputs"))
    assert a.record.spikes.dtype == torch.bool and a.record.spikes.shape == (1500, 3, 500)
    assert a.record.spikes.sum() > 1000, "the network must be active for the comparison to mean anything"
    assert torch.equal(a.record.spikes, b.record.spikes)
    assert torch.equal(a.outputs, b.outputs) and torch.equal(a.record.outputs, b.record.outputs)
    torch.testing.assert_close(a.state.vg, b.state.vg, rtol=0, atol=atol)
    assert torch.equal(a.state.free_at, b.state.free_at) and a.state.t == b.state.t == 1500


def test_cuba_loop_on_the_full_network_equals_stepping() -> None:
    model = CUBA(seed=0, dtype=torch.float64)
    a, b = run_both(model, 2000, 1, ("spikes",))
    assert torch.equal(a.record.spikes, b.record.spikes)
    rate = float(a.record.spikes.sum()) / (model.n_units * 2000 * model.dt)
    assert 3.0 < rate < 10.0, f"the 4000-neuron network fires at ~5.5 Hz, got {rate:.2f} Hz"


def test_cuba_loop_records_what_the_monitors_select() -> None:
    model = CUBA(**SMALL, seed=4, dtype=torch.float64)
    monitors = (cl.Monitor("spikes", batch=[2, 0], neurons=[1, 5, 7, 400]), cl.Monitor("outputs", batch=[1]))
    a, b = run_both(model, 400, 3, monitors)
    assert a.record.spikes.shape == (400, 2, 4) and a.record.outputs.shape == (400, 1, 1)
    assert torch.equal(a.record.spikes, b.record.spikes)
    assert torch.equal(a.record.outputs, b.record.outputs)


def test_cuba_loop_continues_a_state_with_refractory_neurons() -> None:
    model = CUBA(**SMALL, seed=5, dtype=torch.float64)
    sim = cl.Simulator(model, monitors=("spikes",))
    whole = sim.run(torch.zeros(600, 2, 0, dtype=torch.float64))
    first = sim.run(torch.zeros(250, 2, 0, dtype=torch.float64))
    assert bool((first.state.free_at > first.state.t).any()), "some neuron must be refractory at the split"
    second = sim.run(torch.zeros(350, 2, 0, dtype=torch.float64), state=first.state)
    assert torch.equal(torch.cat([first.record.spikes, second.record.spikes]), whole.record.spikes)
    assert torch.equal(second.state.vg, whole.state.vg)
    # the caller's state is not modified by the loop
    again = sim.run(torch.zeros(350, 2, 0, dtype=torch.float64), state=first.state)
    assert torch.equal(again.record.spikes, second.record.spikes)


def test_cuba_steps_when_the_loop_cannot_give_what_is_asked() -> None:
    model = CUBA(**SMALL, seed=0, dtype=torch.float64)
    assert cl.Simulator(model).uses_fused_path()
    assert not cl.Simulator(model, monitors=("spikes", "v")).uses_fused_path()
    assert not cl.Simulator(model, fast=False).uses_fused_path()
    assert not cl.Simulator(CUBA(**SMALL, seed=0, delivery="dense")).uses_fused_path()
    with torch.no_grad():
        assert torch.equal(model(torch.zeros(50, 2, 0, dtype=torch.float64)),
                           cl.Simulator(model, fast=False).run(torch.zeros(50, 2, 0, dtype=torch.float64)).outputs)


def test_cuba_loop_refuses_bad_monitors_by_name() -> None:
    model = CUBA(**SMALL, seed=0, dtype=torch.float64)
    x = torch.zeros(5, 2, 0, dtype=torch.float64)
    with pytest.raises(ValueError, match="batch entries must be in"):
        cl.Simulator(model, monitors=[cl.Monitor("spikes", batch=[2])]).run(x)
    with pytest.raises(ValueError, match=r"batch entries \[4\] are not in the run"):
        cl.Simulator(model, monitors=[cl.Monitor("outputs", batch=[0, 4])]).run(x)
    with pytest.raises(ValueError, match="synapses="):
        cl.Simulator(model, monitors=[cl.Monitor("spikes", synapses=[(0, 1)])]).run(x)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("feedback", [False, True])
def test_echo_state_loop_equals_stepping(dtype: torch.dtype, atol: float, feedback: bool, monkeypatch) -> None:
    reservoir = cl.models.EchoState(2, 120, spectral_radius=1.1, leak=0.3, density=0.1, feedback=feedback,
                                    seed=0).to(dtype)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, 2, generator=gen, dtype=dtype)
    teacher = torch.randn(300, 3, 1, generator=gen, dtype=dtype) if feedback else None
    start = reservoir.init_state(3)._replace(h=torch.rand(3, 120, dtype=dtype) - 0.5)
    compiled, last = reservoir.states(x, teacher=teacher, state=start)
    monkeypatch.setattr(native, "supports", lambda *tensors: False)
    stepped, last_ref = reservoir.states(x, teacher=teacher, state=start)
    torch.testing.assert_close(compiled, stepped, rtol=0, atol=atol)
    torch.testing.assert_close(last.h, last_ref.h, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("adaptive_fraction, rate_reg", [(0.0, 0.0), (0.5, 0.0), (0.5, 1e-4)])
def test_eprop_trace_loop_equals_pytorch_traces(dtype: torch.dtype, rtol: float, adaptive_fraction: float,
                                                rate_reg: float, monkeypatch) -> None:
    net = cl.models.LIF(4, 24, 2, adaptive_fraction=adaptive_fraction, seed=0).to(dtype)
    gen = torch.Generator().manual_seed(1)
    # 83 steps: ten full chunks of the compiled pass and a partial one
    x = (torch.rand(83, 3, 4, generator=gen) < 0.3).to(dtype)
    y = torch.randn(83, 3, 2, generator=gen, dtype=dtype)
    rule = cl.rules.EProp("random", seed=0, rate_target=10.0 if rate_reg else None, rate_reg=rate_reg)
    compiled = rule_estimate(net, rule, x, y)
    assert rule._t["compiled"]
    monkeypatch.setattr(native, "supports", lambda *tensors: False)
    stepped = rule_estimate(net, rule, x, y)
    assert not rule._t["compiled"]
    for name, value in stepped.items():
        assert value.abs().max() > 0, name
        torch.testing.assert_close(compiled[name], value, rtol=rtol, atol=rtol * float(value.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("monitored", [False, True])
def test_eprop_trace_thread_equals_the_inline_pass(dtype: torch.dtype, monitored: bool) -> None:
    """The pass on the helper thread, overlapped with the next chunk's steps, gives the same
    numbers bit for bit (the sums run in the same order); monitors read the settled traces."""
    net = cl.models.LIF(4, 24, 2, adaptive_fraction=0.5, seed=0).to(dtype)
    gen = torch.Generator().manual_seed(2)
    x = (torch.rand(83, 3, 4, generator=gen) < 0.3).to(dtype)
    y = torch.randn(83, 3, 2, generator=gen, dtype=dtype)
    got = {}
    for overlap in (True, False):
        rule = cl.rules.EProp("random", seed=0, rate_target=10.0, rate_reg=1e-4, trace_thread=overlap)
        sim = cl.Simulator(net, rule, ["eligibility", "eps_a"] if monitored else ())
        for p in net.parameters():
            p.grad = None
        result = sim.run(x, target=y)
        assert (rule._t["spare"] is not None) == overlap
        got[overlap] = ({n: p.grad.clone() for n, p in net.named_parameters()},
                        {n: getattr(result.record, n) for n in ("eligibility", "eps_a")} if monitored else {})
    for name, value in got[False][0].items():
        assert value.abs().max() > 0, name
        assert torch.equal(got[True][0][name], value), name
    for name, value in got[False][1].items():
        assert torch.equal(got[True][1][name], value), name


def test_no_trace_pass_outlives_its_run() -> None:
    """Without a target nothing is written, and the last pass has finished when run returns."""
    net = cl.models.LIF(3, 8, 1, adaptive_fraction=0.5, seed=0)
    rule = cl.rules.EProp(trace_thread=True)
    cl.Simulator(net, rule).run((torch.rand(40, 2, 3) < 0.3).float())
    assert not rule._t["running"] and native._in_flight == ()
    assert all(p.grad is None for p in net.parameters())


def test_eprop_trace_thread_survives_fork() -> None:
    """A child forked after the parent started the helper thread starts its own."""
    code = (
        "import os, torch, creditlab as cl\n"
        "net = cl.models.LIF(3, 8, 1, adaptive_fraction=0.5, seed=0)\n"
        "x, y = (torch.rand(40, 2, 3) < 0.3).float(), torch.randn(40, 2, 1)\n"
        "def grads():\n"
        "    cl.Simulator(net, cl.rules.EProp(trace_thread=True)).run(x, target=y)\n"
        "    return [p.grad.clone() for p in net.parameters()]\n"
        "parent = grads()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    child = grads()\n"
        "    os._exit(0 if all(torch.equal(a, 2 * b) for a, b in zip(child, parent)) else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status))\n")
    assert run_python(code) == "0"


def run_python(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


PROBE = "from creditlab import native; print(native.available(), '|', native.reason())"


def test_compiled_library_is_cached_by_source_hash(tmp_path: Path) -> None:
    assert run_python(PROBE, XDG_CACHE_HOME=str(tmp_path)) == "True | None"
    built = list((tmp_path / "creditlab" / "native").glob("loops-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    assert run_python(PROBE, XDG_CACHE_HOME=str(tmp_path)) == "True | None"
    assert built[0].stat().st_mtime_ns == stamp, "a cached build must be reused, not recompiled"


def test_without_a_compiler_models_fall_back_to_pytorch(tmp_path: Path) -> None:
    out = run_python(PROBE, XDG_CACHE_HOME=str(tmp_path), CC="no-such-compiler")
    assert out.startswith("False |") and "no C compiler" in out and "$CC" in out
    assert run_python(PROBE, CREDITLAB_NATIVE="0") == "False | switched off by CREDITLAB_NATIVE=0"
    code = ("import torch, creditlab as cl; m = cl.models.CUBA(n_exc=40, n_inh=10, p=0.2, seed=0);"
            "s = cl.Simulator(m, monitors=['spikes']); r = s.run(torch.zeros(20, 1, 0));"
            "print(s.uses_fused_path(), tuple(r.record.spikes.shape))")
    assert run_python(code, XDG_CACHE_HOME=str(tmp_path), CC="no-such-compiler") == "False (20, 1, 50)"
