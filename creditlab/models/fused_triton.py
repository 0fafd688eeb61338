"""Triton kernels on CUDA: :func:`~creditlab.models.fused.lif_sequence`, e-prop's trace pass, CUBA runs.

The PyTorch loop of :mod:`creditlab.models.fused` launches ~8 kernels per
time step in forward and ~8 in backward; at T = 1000 that is ~16 000 launches
whose fixed cost, not arithmetic, sets the time on a GPU.  Here each lane
(one batch entry × one neuron) keeps v, a, z and its refractory counter in
registers while one kernel walks the steps:

- feed-forward (no ``w_rec``): the whole sequence is one forward launch and
  one backward launch — the time loop runs inside the kernel;
- recurrent: each step is the product z^{t−1} W_recᵀ (PyTorch) and one
  kernel launch for the rest, I^t added inside the kernel; backward likewise is one
  launch and one ``addmm`` per step, and ∂L/∂W_rec is the same single
  [N, T·B]·[T·B, N] product as the PyTorch path.

The kernels compute the equations of :mod:`creditlab.models.fused` in the
PyTorch path's operation order, with fused multiply-adds switched off and
IEEE division, so the spikes are bit-for-bit those of the reference on the
same device.  ψ is re-evaluated in backward from the stored scaled voltage.

On a machine without a GPU the same kernels run in Triton's interpreter
(``TRITON_INTERPRET=1``, CPU tensors), which is how the equality tests run
in CI; the interpreter is far too slow for real work and is never picked
automatically.

:func:`eprop_traces` is the GPU form of :func:`creditlab.native.eprop_traces`
(see :mod:`creditlab.rules.eprop`), and :func:`cuba_run` that of
:func:`creditlab.native.cuba_run` (see :mod:`creditlab.models.cuba`).
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
import warnings
from types import ModuleType
from typing import Any, Callable, NamedTuple

import torch

from .surrogate import Surrogate

#: the float dtypes whose arithmetic the kernels reproduce exactly (half precision
#: in PyTorch computes in float32 between rounding steps; the kernels would not)
DTYPES = (torch.float32, torch.float64)
#: surrogates with a Heaviside forward; ``"smooth"`` (graded spikes) stays on the PyTorch path
SURROGATE_CODES = {"fast_sigmoid": 0, "triangle": 1, "arctan": 2}
#: lanes per Triton program
BLOCK = 256


@functools.cache
def _kernels() -> ModuleType:
    from . import _triton_kernels
    return _triton_kernels


def interpreted() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def unavailable_reason(current: torch.Tensor, surrogate: Surrogate) -> str | None:
    """Why the Triton kernels cannot run this sequence (``None`` when they can)."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    if not current.is_cuda and not interpreted():
        return "Triton kernels run on CUDA tensors (or on CPU tensors under TRITON_INTERPRET=1)"
    if current.dtype not in DTYPES:
        return f"the Triton kernels take float32 or float64, got {current.dtype}"
    if surrogate.name not in SURROGATE_CODES:
        return f"surrogate {surrogate.name!r} has graded spikes; the Triton kernels take {tuple(SURROGATE_CODES)}"
    return None


#: per kernel configuration (LIF, or "cuba" with device and dtype): "" once its probe launch ran, else why it failed
_probe_errors: dict[tuple[Any, ...], str] = {}


def auto_usable(current: torch.Tensor, surrogate: Surrogate, adaptive: bool, refractory: bool) -> bool:
    """Whether ``backend="auto"`` takes the Triton kernels: CUDA, supported config, and a probe
    launch of this kernel configuration compiled (a compiler failure warns once and falls back)."""
    if not current.is_cuda or unavailable_reason(current, surrogate) is not None:
        return False
    key = (current.device, current.dtype, surrogate.name, adaptive, refractory)
    return _compiles(key, lambda: _probe(current, surrogate, adaptive, refractory),
                     f"the Triton LIF kernels failed to compile on {current.device}",
                     "lif_sequence uses its PyTorch loop")


def _compiles(key: tuple[Any, ...], probe: Callable[[], None], failure: str, fallback: str) -> bool:
    """Whether ``probe`` (a small launch of one kernel configuration) ran; tried once per key, a
    failure warns once (``failure``; ``fallback``) and the caller takes its PyTorch path."""
    if key not in _probe_errors:
        try:
            probe()
            _probe_errors[key] = ""
        except Exception as err:      # a kernel that does not compile here must not break the run
            _probe_errors[key] = f"{type(err).__name__}: {err}"
            warnings.warn(f"creditlab: {failure} ({_probe_errors[key]}); {fallback}", RuntimeWarning, stacklevel=4)
    return not _probe_errors[key]


def _probe(current: torch.Tensor, surrogate: Surrogate, adaptive: bool, refractory: bool) -> None:
    one = current.new_zeros(2, 1, 1)
    beta = one.new_ones(1) if adaptive else None
    cfg = KernelConfig(1.0, 0.9, 0.9, 2 if refractory else 0, surrogate)
    z = one.new_zeros(1, 1)
    out = forward(one, None, beta, z, z, z, torch.zeros(1, 1, dtype=torch.int32, device=one.device), cfg)
    backward(out, torch.ones_like(one), None, None, None, beta, z, cfg)


class KernelConfig(NamedTuple):
    alpha: float
    rho: float
    v_th: float
    n_refractory: int
    surrogate: Surrogate


def _constants(cfg: KernelConfig, like: torch.Tensor) -> torch.Tensor:
    """The float constants in the sequence's dtype, read by the kernels from memory: a Triton
    scalar argument would be rounded to float32, and float64 runs must match PyTorch's float64."""
    s = cfg.surrogate
    # the three ψ forms, with the constants grouped as Surrogate.pseudo groups them
    if s.name == "fast_sigmoid":
        p1, p2 = s.slope, 0.0
    elif s.name == "triangle":
        p1, p2 = s.slope, s.dampening
    else:
        p1, p2 = math.pi / 2 * s.slope, s.slope / 2
    return torch.tensor([cfg.alpha, cfg.rho, cfg.v_th, p1, p2], dtype=like.dtype, device=like.device)


class ForwardOut(NamedTuple):
    spikes: torch.Tensor       # z^t, [T, B, N]
    scaled: torch.Tensor       # s^t, [T, B, N]
    free: torch.Tensor | None  # 1 where a neuron was not refractory at t, [T, B, N] uint8
    v: torch.Tensor
    a: torch.Tensor
    refractory: torch.Tensor


def _launch(name: str, lanes: int, *args: Any, **meta: Any) -> None:
    # no fused multiply-adds: each product is rounded as in the PyTorch path
    getattr(_kernels(), name)[(-(-lanes // BLOCK),)](*args, BLOCK=BLOCK, enable_fp_fusion=False, **meta)


def forward(current: torch.Tensor, w_rec: torch.Tensor | None, beta: torch.Tensor | None,
            v0: torch.Tensor, z0: torch.Tensor, a0: torch.Tensor, refractory0: torch.Tensor,
            cfg: KernelConfig) -> ForwardOut:
    """The forward sequence: one launch over all steps, or one product and one launch per step."""
    current = current.contiguous()
    n_steps, batch, n_units = current.shape
    lanes = batch * n_units
    spikes, scaled = torch.empty_like(current), torch.empty_like(current)
    free = torch.empty(current.shape, dtype=torch.uint8, device=current.device) if cfg.n_refractory else None
    v, a = v0.contiguous().clone(), a0.contiguous().clone()
    refractory = refractory0.to(torch.int32).contiguous().clone()
    consts = _constants(cfg, current)
    beta_arg = beta.contiguous() if beta is not None else consts
    meta = dict(ADAPTIVE=beta is not None, REFRACTORY=bool(cfg.n_refractory))

    def run(recurrent: torch.Tensor | None, z_prev: torch.Tensor, t0: int, steps: int) -> None:
        _launch("lif_forward", lanes, current[t0], recurrent if recurrent is not None else current[t0],
                spikes[t0], scaled[t0], free[t0] if free is not None else spikes[t0], v, a, refractory,
                z_prev.contiguous(), beta_arg, consts, steps, lanes, n_units, cfg.n_refractory,
                HAS_RECURRENT=recurrent is not None, **meta)

    if w_rec is None:
        run(None, z0, 0, n_steps)
    else:
        product = torch.empty_like(v0)
        z_prev = z0
        for t in range(n_steps):
            # the product alone; the kernel adds I^t to it, the PyTorch path's sum and rounding
            run(torch.mm(z_prev, w_rec.t(), out=product), z_prev, t, 1)
            z_prev = spikes[t]
    return ForwardOut(spikes, scaled, free, v, a, refractory.to(refractory0.dtype))


def backward(out: ForwardOut, g_spikes: torch.Tensor, g_v_end: torch.Tensor | None,
             g_a_end: torch.Tensor | None, w_rec: torch.Tensor | None, beta: torch.Tensor | None,
             z0: torch.Tensor, cfg: KernelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """∂L/∂I for every step and ∂L/∂(v⁰, z⁰, a⁰), carried back through the whole sequence."""
    scaled = out.scaled
    n_steps, batch, n_units = scaled.shape
    lanes = batch * n_units
    g_spikes = g_spikes.contiguous()
    g_current = torch.empty_like(scaled)
    g_v = torch.zeros_like(z0) if g_v_end is None else g_v_end.contiguous().clone()
    g_a = torch.zeros_like(z0) if g_a_end is None else g_a_end.contiguous().clone()
    g_z = torch.zeros_like(z0)
    consts = _constants(cfg, scaled)
    beta_arg = beta.contiguous() if beta is not None else consts
    free = out.free
    meta = dict(ADAPTIVE=beta is not None, REFRACTORY=bool(cfg.n_refractory),
                TRACK_A=beta is not None or g_a_end is not None,
                SURROGATE=SURROGATE_CODES[cfg.surrogate.name])

    def run(t_last: int, steps: int) -> None:
        # pointers at the last step of the span; the kernel walks back ``steps`` steps
        _launch("lif_backward", lanes, scaled[t_last], free[t_last] if free is not None else scaled[t_last],
                g_spikes[t_last], g_current[t_last], g_v, g_a, g_z, beta_arg, consts, steps, lanes, n_units,
                **meta)

    if w_rec is None:
        run(n_steps - 1, n_steps)
    else:
        for t in range(n_steps - 1, -1, -1):
            run(t, 1)
            g_z.addmm_(g_current[t], w_rec)
    return g_current, g_v, g_z, g_a


def eprop_usable(ebar: torch.Tensor) -> bool:
    """Whether e-prop takes the Triton trace pass for traces like ``ebar``: CUDA tensors,
    float32/float64, Triton installed (never the CPU interpreter, which is for tests)."""
    return ebar.is_cuda and ebar.dtype in DTYPES and importlib.util.find_spec("triton") is not None


def eprop_traces(psi: torch.Tensor, zbar: torch.Tensor, beta: torch.Tensor, rho: float, kappa: float,
                 ebar: torch.Tensor, eps_a: torch.Tensor | None, signal: torch.Tensor, active: torch.Tensor,
                 grad: torch.Tensor, e_sum: torch.Tensor | None = None) -> None:
    """:func:`creditlab.native.eprop_traces` as one Triton launch: ε^a, ē and the gradient sums of
    a chunk of e-prop steps, each trace read and written once (same arguments, same updates)."""
    n, batch, p = ebar.shape
    n_alif = 0 if eps_a is None else eps_a.shape[0]
    consts = torch.tensor([rho, kappa], dtype=ebar.dtype, device=ebar.device)
    grid = (n, -(-p // BLOCK))
    _kernels().eprop_traces[grid](
        psi, zbar, beta if n_alif else consts, consts, ebar, eps_a if eps_a is not None else ebar, signal,
        active, grad, e_sum if e_sum is not None else grad, signal.shape[0], n, batch, p, n - n_alif,
        HAS_E_SUM=e_sum is not None, BLOCK=BLOCK, enable_fp_fusion=False)


#: most neurons the CUBA kernel holds in one program's registers (larger networks step in PyTorch)
CUBA_MAX_UNITS = 8192


def cuba_usable(like: torch.Tensor, n_units: int) -> bool:
    """Whether a CUBA run of ``n_units`` neurons with ``like``'s device and dtype takes the Triton
    kernel: CUDA, float32/float64, ``n_units`` ≤ ``CUBA_MAX_UNITS``, Triton installed, and a probe
    launch compiled (else a warning, once)."""
    if not like.is_cuda or like.dtype not in DTYPES or n_units > CUBA_MAX_UNITS \
            or importlib.util.find_spec("triton") is None:
        return False
    return _compiles(("cuba", like.device, like.dtype), lambda: _cuba_probe(like),
                     f"the Triton CUBA kernel failed to compile on {like.device}", "the network steps in PyTorch")


def _cuba_probe(like: torch.Tensor) -> None:
    # two neurons, one synapse 0 → 1, both above threshold: the event loop runs once
    propagator = torch.eye(3, dtype=like.dtype, device=like.device)
    vg = torch.zeros(1, 3, 2, dtype=like.dtype, device=like.device)
    vg[:, 2] = 1.0
    targets = torch.tensor([[1], [0]], device=like.device)
    weights = torch.tensor([[0.5], [0.0]], dtype=like.dtype, device=like.device)
    cuba_run(2, 0, propagator, propagator.new_zeros(3), 0.5, 0.0, 1, targets, weights, vg,
             torch.zeros(1, 2, dtype=torch.int64, device=like.device), [0])


def cuba_run(n_steps: int, t0: int, propagator: torch.Tensor, offset: torch.Tensor, v_th: float,
             v_reset: float, n_refractory: int, targets: torch.Tensor, weights: torch.Tensor,
             vg: torch.Tensor, free_at: torch.Tensor, record_rows: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`creditlab.native.cuba_run` on the GPU: one Triton program per trial.

    Each program keeps its trial's g_e, g_i, v and refractory ends in registers
    for all ``n_steps`` steps, so a batch of independent trials runs as one
    launch.  Per step: the propagator update (summed in the CPU loop's order,
    no fused multiply-adds), the threshold, and — only when a neuron spiked —
    the spiking indices compacted in ascending order and the currents written
    to a per-trial buffer; then, spike by spike, the lanes of its padded row
    add its weights to their targets' currents in that buffer (a row's
    targets are distinct), and the currents are read back once.  Each current
    thus receives its synapses' weights one at a time in the CPU loop's
    order: the same sums, the same spikes; a spike reads and writes only its
    fan-out's currents.
    ``vg [B, 3, N]`` and ``free_at [B, N]`` are updated in place; returns the
    spike counts ``[T, B]`` and, for the trials in ``record_rows``, their
    spikes ``[T, len(record_rows), N]`` (bool).
    """
    import triton
    batch, _, n = vg.shape
    device, dtype = vg.device, vg.dtype
    consts = torch.cat([propagator.reshape(-1).to(torch.float64), offset.reshape(-1).to(torch.float64),
                        torch.tensor([v_th, v_reset], dtype=torch.float64, device=device)]).to(dtype)
    counts = torch.empty(n_steps, batch, dtype=dtype, device=device)
    slot = torch.full((batch,), -1, dtype=torch.int64, device=device)
    record = None
    if record_rows:
        slot[torch.tensor(record_rows, dtype=torch.int64, device=device)] = torch.arange(len(record_rows),
                                                                                      device=device)
        record = torch.zeros(n_steps, len(record_rows), n, dtype=torch.uint8, device=device)
    acc = torch.empty(batch, 2 * n, dtype=dtype, device=device)
    spiked = torch.empty(batch, n, dtype=torch.int32, device=device)
    block = triton.next_power_of_2(n)
    fan_out = targets.shape[1]
    _kernels().cuba_run[(batch,)](
        vg, free_at, acc, spiked, targets.contiguous(), weights.contiguous(), consts, counts,
        record if record is not None else spiked, slot, n_steps, t0, batch, n, fan_out, n_refractory,
        len(record_rows), RECORD=record is not None, BLOCK=block,
        K_BLOCK=triton.next_power_of_2(max(fan_out, 1)),
        # loads stay in program order around the barriers: no software pipelining.  Eight warps for the
        # 4000-neuron network: 0.37 s for 1000 trials against 0.40 s with sixteen (H200, float64)
        num_warps=max(4, min(16, block // 512)), num_stages=1, enable_fp_fusion=False)
    return counts, None if record is None else record.bool()
