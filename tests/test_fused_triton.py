"""The Triton LIF kernels equal the PyTorch reference loop of ``lif_sequence``.

On a CUDA machine the kernels are compiled and run on the GPU; elsewhere they
run in Triton's CPU interpreter (``TRITON_INTERPRET=1``, which
tests/conftest.py sets when there is no GPU, before Triton is first imported).
"""
from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("triton")

import creditlab as cl  # noqa: E402
from creditlab import native  # noqa: E402
from creditlab.models import Surrogate, fused_triton, lif_sequence  # noqa: E402
from creditlab.models.fused import LIFSequenceState  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def _run(backend: str, current: torch.Tensor, w_rec: torch.Tensor | None, state: LIFSequenceState | None,
         **kwargs) -> tuple[torch.Tensor, LIFSequenceState, tuple[torch.Tensor | None, ...]]:
    spikes, end = lif_sequence(current, w_rec=w_rec, state=state, backend=backend, **kwargs)
    weights = torch.linspace(-1.0, 1.0, spikes.numel(), dtype=spikes.dtype, device=spikes.device)
    # a loss through every output: the spikes, the final membrane and adaptation
    loss = (spikes.flatten() * weights).sum() + (end.v ** 2).sum() + 0.3 * end.a.sum()
    inputs = [current] + ([w_rec] if w_rec is not None else []) + ([state.v, state.z, state.a] if state else [])
    grads = torch.autograd.grad(loss, inputs)
    return spikes.detach(), LIFSequenceState(*(x.detach() for x in end)), grads


def _inputs(dtype: torch.dtype, recurrent: bool, with_state: bool, batch: int = 3, units: int = 5,
            steps: int = 12) -> tuple[torch.Tensor, torch.Tensor | None, LIFSequenceState | None]:
    gen = torch.Generator().manual_seed(0)
    current = (1.5 * torch.randn(steps, batch, units, generator=gen, dtype=dtype)).to(DEVICE).requires_grad_()
    w_rec = (0.5 * torch.randn(units, units, generator=gen, dtype=dtype)).to(DEVICE).requires_grad_() \
        if recurrent else None
    state = None
    if with_state:
        v, a = (torch.rand(2, batch, units, generator=gen, dtype=dtype)).to(DEVICE).unbind(0)
        z = (torch.rand(batch, units, generator=gen) < 0.3).to(dtype=dtype, device=DEVICE)
        refractory = torch.randint(0, 2, (batch, units), generator=gen, dtype=torch.int32).to(DEVICE)
        state = LIFSequenceState(v.requires_grad_(), z.requires_grad_(), a.requires_grad_(), refractory)
    return current, w_rec, state


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("n_refractory", [0, 2])
@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "triangle", "arctan"])
def test_triton_kernels_equal_the_pytorch_loop(dtype: torch.dtype, recurrent: bool, adaptive: bool,
                                               n_refractory: int, surrogate: str) -> None:
    current, w_rec, state = _inputs(dtype, recurrent, with_state=True)
    beta = torch.rand(current.shape[-1], generator=torch.Generator().manual_seed(1), dtype=dtype).to(DEVICE) \
        if adaptive else None
    kwargs = dict(alpha=0.9, v_th=0.8, surrogate=surrogate, beta=beta, rho=0.95, n_refractory=n_refractory)
    ref_spikes, ref_end, ref_grads = _run("torch", current, w_rec, state, **kwargs)
    spikes, end, grads = _run("triton", current, w_rec, state, **kwargs)
    assert ref_spikes.sum() > 0 and ref_spikes.sum() < ref_spikes.numel()
    assert torch.equal(spikes, ref_spikes)
    for got, want in zip(end, ref_end):
        assert got.dtype == want.dtype and torch.equal(got, want)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("recurrent", [False, True])
def test_triton_kernels_cover_lanes_across_programs(recurrent: bool) -> None:
    # 7 × 50 = 350 lanes: two programs of 256, the second one masked
    current, w_rec, _ = _inputs(torch.float32, recurrent, with_state=False, batch=7, units=50, steps=6)
    ref_spikes, ref_end, ref_grads = _run("torch", current, w_rec, None, alpha=0.95, surrogate="fast_sigmoid")
    spikes, end, grads = _run("triton", current, w_rec, None, alpha=0.95, surrogate="fast_sigmoid")
    assert fused_triton.BLOCK < current[0].numel() < 2 * fused_triton.BLOCK
    assert torch.equal(spikes, ref_spikes) and torch.equal(end.v, ref_end.v)
    for got, want in zip(grads, ref_grads):
        # float32 sums through recurrent products: cuBLAS picks its reduction order per shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_triton_backend_names_what_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    current = torch.randn(4, 2, 3, device=DEVICE)
    with pytest.raises(ValueError, match="backend='triton'.*graded spikes"):
        lif_sequence(current, alpha=0.9, surrogate="smooth", backend="triton")
    with pytest.raises(ValueError, match="backend='triton'.*float32 or float64"):
        lif_sequence(current.half(), alpha=0.9, backend="triton")
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'torch', 'triton'"):
        lif_sequence(current, alpha=0.9, backend="cuda")
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(ValueError, match="CUDA tensors"):
            lif_sequence(current, alpha=0.9, backend="triton")


def test_auto_backend_takes_triton_only_on_cuda() -> None:
    current = torch.randn(3, 2, 4, device=DEVICE)
    assert fused_triton.auto_usable(current, Surrogate("fast_sigmoid", 10.0), adaptive=False,
                                    refractory=False) is CUDA
    assert fused_triton.auto_usable(current, Surrogate("smooth", 5.0), adaptive=False, refractory=False) is False


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("adaptive_fraction, rate_reg", [(0.0, 0.0), (0.5, 1e-4)])
def test_eprop_triton_trace_pass_equals_the_other_passes(dtype: torch.dtype, rtol: float, adaptive_fraction: float,
                                                         rate_reg: float, monkeypatch: pytest.MonkeyPatch) -> None:
    net = cl.models.LIF(4, 24, 2, adaptive_fraction=adaptive_fraction, seed=0).to(dtype=dtype, device=DEVICE)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(60, 3, 4, generator=gen) < 0.3).to(dtype=dtype, device=DEVICE)
    y = torch.randn(60, 3, 2, generator=gen, dtype=dtype).to(DEVICE)
    rule = cl.rules.EProp("random", seed=0, rate_target=10.0 if rate_reg else None, rate_reg=rate_reg)
    monkeypatch.setattr(native, "supports", lambda *tensors: False)
    monkeypatch.setattr(fused_triton, "eprop_usable", lambda ebar: True)
    kernel = cl.rules.rule_estimate(net, rule, x, y)
    assert rule._t["compiled"] is fused_triton.eprop_traces
    monkeypatch.setattr(fused_triton, "eprop_usable", lambda ebar: False)
    reference = cl.rules.rule_estimate(net, rule, x, y)
    assert rule._t["compiled"] is None
    for name, value in reference.items():
        assert value.abs().max() > 0, name
        torch.testing.assert_close(kernel[name], value, rtol=rtol, atol=rtol * float(value.abs().max()))


def test_eprop_triton_trace_pass_equals_the_c_loop_bit_for_bit() -> None:
    if not native.available():
        pytest.skip(f"compiled loops unavailable: {native.reason()}")
    gen = torch.Generator().manual_seed(0)
    chunk, n, batch, p, n_alif = 3, 5, 4, 300, 3
    draw = lambda *shape: torch.rand(*shape, generator=gen)
    psi, zbar, signal, beta = (draw(chunk + 1, batch, n), draw(chunk + 1, batch, p), draw(chunk, batch, n),
                               draw(n_alif))
    active = torch.tensor([1, 0, 1], dtype=torch.uint8)      # the middle step has no learning signal
    state = [draw(n, batch, p), draw(n_alif, batch, p), draw(n, p), draw(n, p)]
    c_loop, kernel = [s.clone() for s in state], [s.to(DEVICE) for s in state]
    native.eprop_traces(psi, zbar, beta, 0.97, 0.9, *c_loop[:2], signal, active, *c_loop[2:])
    fused_triton.eprop_traces(*(v.to(DEVICE) for v in (psi, zbar, beta)), 0.97, 0.9, *kernel[:2],
                              signal.to(DEVICE), active.to(DEVICE), *kernel[2:])
    for name, want, got in zip(("ebar", "eps_a", "grad", "e_sum"), c_loop, kernel):
        assert torch.equal(got.cpu(), want), name


def test_a_kernel_that_does_not_compile_warns_once_and_is_not_taken() -> None:
    calls = []

    def failing() -> None:
        calls.append(1)
        raise RuntimeError("error encountered during parsing")

    key = ("test", object())
    with pytest.warns(RuntimeWarning, match=r"kernel X failed \(RuntimeError: error encountered during parsing\); "
                                            r"PyTorch instead"):
        assert not fused_triton._compiles(key, failing, "kernel X failed", "PyTorch instead")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not fused_triton._compiles(key, failing, "kernel X failed", "PyTorch instead")
    assert len(calls) == 1, "the probe runs once per configuration"
    assert fused_triton._compiles(("test", object()), lambda: None, "unused", "unused")
