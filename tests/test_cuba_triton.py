"""The Triton CUBA kernel (one program per trial) equals the PyTorch step path.

On a CUDA machine the kernel is compiled and run on the GPU, and the
Simulator takes it for a model on CUDA; elsewhere it runs in Triton's CPU
interpreter (``TRITON_INTERPRET=1``, which tests/conftest.py sets).
"""
from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
pytest.importorskip("triton")

import creditlab as cl  # noqa: E402
from creditlab.models import fused_triton  # noqa: E402
from creditlab.models.cuba import CUBA  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
#: a 500-neuron CUBA with the full network's fan-out (p · N = 80), which keeps it in the same regime
SMALL = dict(n_exc=400, n_inh=100, p=0.16)
#: the interpreter runs a few hundred steps in seconds; the GPU runs longer
STEPS = 1500 if CUDA else 300


def stepped(model: CUBA, state, n_steps: int) -> tuple[torch.Tensor, object]:
    spikes = []
    for _ in range(n_steps):
        _, state, local = model.step(None, state)
        spikes.append(local.z)
    return torch.stack(spikes), state


def kernel(model: CUBA, state, n_steps: int, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor | None, tuple]:
    vg, free_at = state.vg.to(DEVICE).clone(), state.free_at.to(DEVICE).clone()
    counts, spikes = fused_triton.cuba_run(
        n_steps, state.t, model.propagator.to(DEVICE), model.offset.view(-1).to(DEVICE), model.v_th,
        model.v_reset, model.n_refractory, model.synapses.targets.to(DEVICE), model.synapses.weights.to(DEVICE),
        vg, free_at, rows)
    return counts.cpu(), None if spikes is None else spikes.cpu(), (vg.cpu(), free_at.cpu())


#: On the H200's host (16-core CPU, torch 2.11) the PyTorch step path itself leaves the compiled C
#: loop in float32 (first differing spike at step 110 of 1500 for this test's network; float64
#: identical), while the kernel equals the C loop bit for bit in both dtypes there
#: (test_kernel_equals_the_compiled_loop).  The reference, not the kernel, rounds differently on
#: that host; on this CPU all three agree.
FLOAT32_ON_CUDA = pytest.mark.xfail(CUDA, reason="on the H200's host the float32 step path rounds differently "
                                                 "from the C loop, which the kernel equals", strict=False)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12),
                                         pytest.param(torch.float32, 1e-6, marks=FLOAT32_ON_CUDA)])
def test_kernel_equals_stepping(dtype: torch.dtype, atol: float) -> None:
    model = CUBA(**SMALL, seed=3, dtype=dtype)
    start = model.init_state(3)
    reference, end = stepped(model, start, STEPS)
    assert reference.sum() > 100, "the network must be active for the comparison to mean anything"
    counts, spikes, (vg, free_at) = kernel(model, start, STEPS, [2, 0])
    assert spikes.dtype == torch.bool and spikes.shape == (STEPS, 2, 500)
    assert torch.equal(spikes, reference[:, [2, 0]])
    assert torch.equal(counts, reference.sum(-1).to(dtype))
    torch.testing.assert_close(vg, end.vg, rtol=0, atol=atol)
    assert torch.equal(free_at, end.free_at)


@pytest.mark.skipif(not cl.native.available(), reason="needs the compiled CPU loop")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernel_equals_the_compiled_loop(dtype: torch.dtype) -> None:
    # the kernel's own reference: the C loop adds in the same order, with no fused multiply-adds, so
    # the states agree bit for bit in either dtype (the PyTorch step path may round differently on some CPUs)
    model = CUBA(**SMALL, seed=3, dtype=dtype)
    start = model.init_state(3)
    vg, free_at = start.vg.clone(), start.free_at.clone()
    counts, spikes = cl.native.cuba_run(STEPS, start.t, model.propagator, model.offset.view(-1), model.v_th,
                                        model.v_reset, model.n_refractory, model.synapses.targets,
                                        model.synapses.weights, vg, free_at, [2, 0])
    assert counts.sum() > 100, "the network must be active for the comparison to mean anything"
    k_counts, k_spikes, (k_vg, k_free_at) = kernel(model, start, STEPS, [2, 0])
    assert torch.equal(k_spikes, spikes)
    assert torch.equal(k_counts, counts)
    assert torch.equal(k_vg, vg)
    assert torch.equal(k_free_at, free_at)


def test_kernel_continues_a_state_with_refractory_neurons() -> None:
    model = CUBA(**SMALL, seed=5, dtype=torch.float64)
    _, middle = stepped(model, model.init_state(2), 120)
    assert bool((middle.free_at > middle.t).any()), "some neuron must be refractory at the split"
    reference, end = stepped(model, middle, 100)
    counts, spikes, (vg, free_at) = kernel(model, middle, 100, [])
    assert spikes is None
    assert torch.equal(counts, reference.sum(-1).to(torch.float64))
    torch.testing.assert_close(vg, end.vg, rtol=0, atol=1e-12)
    assert torch.equal(free_at, end.free_at)


def test_kernel_is_taken_only_for_cuda_models() -> None:
    assert not fused_triton.cuba_usable(torch.zeros(1), 10)
    # on the CPU the compiled loop alone decides
    assert CUBA(n_exc=40, n_inh=10, seed=0, delivery="event").fused_available(traces=False) == cl.native.available()
    if CUDA:
        assert fused_triton.cuba_usable(torch.zeros(1, device="cuda"), 10)
        assert not fused_triton.cuba_usable(torch.zeros(1, device="cuda"), fused_triton.CUBA_MAX_UNITS + 1)
        assert not fused_triton.cuba_usable(torch.zeros(1, dtype=torch.float16, device="cuda"), 10)


@pytest.mark.skipif(not CUDA, reason="the Simulator takes the kernel for models on CUDA")
def test_simulator_on_cuda_equals_the_cpu_loop_on_the_full_network() -> None:
    model = CUBA(seed=0, dtype=torch.float64)
    x = torch.zeros(2000, 4, 0, dtype=torch.float64)
    cpu = cl.Simulator(model, monitors=("spikes",), fast=False).run(x)
    gpu_sim = cl.Simulator(model.to("cuda"), monitors=("spikes",))
    assert gpu_sim.uses_fused_path()
    gpu = gpu_sim.run(x.cuda())
    assert torch.equal(gpu.record.spikes.cpu(), cpu.record.spikes)
    torch.testing.assert_close(gpu.state.vg.cpu(), cpu.state.vg, rtol=0, atol=1e-12)
