"""Compiled CPU loops for runs that PyTorch's per-call overhead would dominate.

A CUBA step of one trial touches ~12 000 numbers and an echo-state step of a
500-unit reservoir ~25 000: a sequence of PyTorch calls spends most of such a
step in dispatch (~5 µs a call), where one compiled loop over the whole run
does the arithmetic alone — what Brian2's cython and cpp_standalone targets
do.  e-prop's per-synapse traces are the opposite case, bound by memory
traffic: one compiled pass reads and writes each trace once where the
PyTorch expression makes six passes.  ``loops.c`` holds these loops; models
and rules call them through the functions here when :func:`available` is
true and fall back to their PyTorch code (the reference, which the tests
compare against) otherwise.

The source is compiled on first use with the system C compiler (``$CC``, else
``cc``) into ``$XDG_CACHE_HOME/creditlab/native`` (default
``~/.cache/creditlab/native``), under a name that hashes the source, the
compiler's version and the flags, and is loaded with :mod:`ctypes`.
``CREDITLAB_NATIVE=0`` switches the compiled loops off; :func:`reason` says
why they are unavailable.

:func:`eprop_traces_start` runs e-prop's trace pass on a C thread of the
library while the caller goes on (:func:`eprop_traces_wait` joins it).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("loops.c")
#: strict IEEE arithmetic (no contraction into fused multiply-adds), as the PyTorch reference rounds
FLAGS = ("-O3", "-std=c99", "-fPIC", "-shared", "-pthread", "-ffp-contract=off")
DTYPES = {torch.float64: "f64", torch.float32: "f32"}

_library: ctypes.CDLL | None = None
_reason: str | None = None
_loaded = False
#: the tensors of the pass on the helper thread, kept alive here until it is done
_in_flight: tuple = ()


def cache_dir() -> Path:
    """Where compiled loops are kept: ``$XDG_CACHE_HOME/creditlab/native``."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "creditlab" / "native"


def available() -> bool:
    """Whether the compiled loops can be used (compiling them on the first call)."""
    return _load() is not None


def reason() -> str | None:
    """Why the compiled loops are unavailable, or None when they are available."""
    _load()
    return _reason


def _load() -> ctypes.CDLL | None:
    global _library, _reason, _loaded
    if _loaded:
        return _library
    _loaded = True
    if os.environ.get("CREDITLAB_NATIVE", "1") == "0":
        _reason = "switched off by CREDITLAB_NATIVE=0"
        return None
    try:
        _library = _declare(ctypes.CDLL(str(_build())))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        _reason = str(error)
    return _library


def _build() -> Path:
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C compiler: {compiler!r} is not on PATH (set $CC)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), version.encode(), " ".join(FLAGS).encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    target = cache_dir() / f"loops-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # compile next to the target and rename: a concurrent process never loads a half-written library
    fd, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", partial, "-lm"],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} with {compiler} failed: {done.stderr.strip()[-2000:]}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for suffix, real in (("f64", ctypes.c_double), ("f32", ctypes.c_float)):
        cuba = getattr(lib, f"cuba_run_{suffix}")
        cuba.argtypes = [i64, i64, i64, i64, ptr, ptr, real, real, i64, ptr, ptr, i64, ptr, ptr, ptr,
                         ptr, ptr, i64, ptr]
        cuba.restype = None
        esn = getattr(lib, f"esn_states_{suffix}")
        esn.argtypes = [i64, i64, i64, ptr, ptr, ptr, ptr, real, real, ptr, ptr]
        esn.restype = None
        eprop = getattr(lib, f"eprop_traces_{suffix}")
        eprop.argtypes = [i64, i64, i64, i64, i64, ptr, ptr, ptr, real, real, ptr, ptr, ptr, ptr, ptr, ptr]
        eprop.restype = None
    lib.eprop_traces_start.argtypes = [ctypes.c_int, i64, i64, i64, i64, i64, ptr, ptr, ptr, ctypes.c_double,
                                       ctypes.c_double, ptr, ptr, ptr, ptr, ptr, ptr]
    lib.eprop_traces_start.restype = ctypes.c_int
    lib.eprop_traces_wait.argtypes = []
    lib.eprop_traces_wait.restype = None
    return lib


def supports(*tensors: torch.Tensor) -> bool:
    """Whether the loops can run on these tensors: CPU, float32 or float64, loops compiled."""
    return all(t.device.type == "cpu" and t.dtype in DTYPES for t in tensors) and available()


def _pointer(tensor: torch.Tensor | None) -> int | None:
    if tensor is None:
        return None
    if not tensor.is_contiguous():
        raise ValueError("compiled loops take contiguous tensors")
    return tensor.data_ptr()


def cuba_run(n_steps: int, t0: int, propagator: torch.Tensor, offset: torch.Tensor, v_th: float,
             v_reset: float, n_refractory: int, targets: torch.Tensor, weights: torch.Tensor,
             vg: torch.Tensor, free_at: torch.Tensor, record_rows: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the CUBA loop in place on ``vg [B, 3, N]`` and ``free_at [B, N]``.

    Returns the spike counts ``[T, B]`` and, when ``record_rows`` lists trials,
    their spikes ``[T, len(record_rows), N]`` (bool).
    """
    lib = _load()
    if lib is None:
        raise RuntimeError(f"compiled loops unavailable: {_reason}")
    batch, _, n = vg.shape
    counts = torch.empty(n_steps, batch, dtype=vg.dtype)
    slot = torch.full((batch,), -1, dtype=torch.int64)
    spikes = None
    if record_rows:
        slot[torch.tensor(record_rows, dtype=torch.int64)] = torch.arange(len(record_rows))
        spikes = torch.zeros(n_steps, len(record_rows), n, dtype=torch.bool)
    scratch = torch.empty(2 * n, dtype=torch.int64)
    getattr(lib, f"cuba_run_{DTYPES[vg.dtype]}")(
        n_steps, batch, n, t0, _pointer(propagator), _pointer(offset), v_th, v_reset, n_refractory,
        _pointer(targets), _pointer(weights), targets.shape[1], _pointer(vg), _pointer(free_at),
        _pointer(counts), _pointer(spikes), _pointer(slot), len(record_rows), _pointer(scratch))
    return counts, spikes


def esn_states(current: torch.Tensor, weight: torch.Tensor, leak: float,
               h0: torch.Tensor) -> torch.Tensor:
    """States ``[T, B, N]`` of ``h ← (1 − leak) h + leak tanh(current_t + W h)`` from ``h0 [B, N]``.

    ``W [N, N]`` is dense; the loop runs over its non-zero entries (CSR).
    """
    lib = _load()
    if lib is None:
        raise RuntimeError(f"compiled loops unavailable: {_reason}")
    n_steps, batch, n = current.shape
    rows, col = weight.nonzero(as_tuple=True)          # row-major order: CSR's
    val = weight[rows, col].contiguous()
    col = col.to(torch.int32)   # half the index traffic of int64 in the loop's gathers
    crow = torch.zeros(n + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    out = torch.empty_like(current)
    getattr(lib, f"esn_states_{DTYPES[current.dtype]}")(
        n_steps, batch, n, _pointer(current), _pointer(crow), _pointer(col), _pointer(val),
        1.0 - leak, leak, _pointer(h0), _pointer(out))
    return out


def eprop_traces(psi: torch.Tensor, zbar: torch.Tensor, beta: torch.Tensor, rho: float, kappa: float,
                 ebar: torch.Tensor, eps_a: torch.Tensor | None, signal: torch.Tensor, active: torch.Tensor,
                 grad: torch.Tensor, e_sum: torch.Tensor | None = None) -> None:
    """K steps of e-prop's LIF/ALIF traces in place, each followed by ``grad += Σ_b signal ⊙ ē``
    (see ``loops.c``).

    ``psi [K+1, B, N]`` and ``zbar [K+1, B, P]`` hold the step before the
    chunk at index 0 and the chunk's steps after it; ``signal [K, B, N]``,
    ``active [K]`` (uint8: 1 where the step has a learning signal);
    ``ebar [N, B, P]``, ``eps_a [A, B, P]`` (the last A neurons adapt, with
    ``beta [A]``), ``grad [N, P]``.  ``e_sum [N, P]`` (optional) accumulates
    Σ_b e, the unfiltered eligibility, for the rate regulariser.  The result
    equals K one-step calls bit for bit, with each trace read once per chunk.
    """
    lib = _load()
    if lib is None:
        raise RuntimeError(f"compiled loops unavailable: {_reason}")
    n, batch, p = ebar.shape
    n_alif = 0 if eps_a is None else eps_a.shape[0]
    getattr(lib, f"eprop_traces_{DTYPES[ebar.dtype]}")(
        signal.shape[0], n, batch, p, n_alif, _pointer(psi), _pointer(zbar), _pointer(beta), rho, kappa,
        _pointer(ebar), _pointer(eps_a), _pointer(signal), _pointer(active), _pointer(grad), _pointer(e_sum))



def eprop_traces_start(psi: torch.Tensor, zbar: torch.Tensor, beta: torch.Tensor, rho: float, kappa: float,
                       ebar: torch.Tensor, eps_a: torch.Tensor | None, signal: torch.Tensor, active: torch.Tensor,
                       grad: torch.Tensor, e_sum: torch.Tensor | None = None) -> None:
    """:func:`eprop_traces` on the library's helper thread; returns as soon as the pass starts.

    Until :func:`eprop_traces_wait` returns, ``ebar``, ``eps_a``, ``grad``
    and ``e_sum`` must stay unread and nothing the pass reads rewritten; the
    module keeps the tensors alive.  A start waits for the pass before it.
    """
    global _in_flight
    lib = _load()
    if lib is None:
        raise RuntimeError(f"compiled loops unavailable: {_reason}")
    n, batch, p = ebar.shape
    n_alif = 0 if eps_a is None else eps_a.shape[0]
    failed = lib.eprop_traces_start(
        int(ebar.dtype == torch.float64), signal.shape[0], n, batch, p, n_alif, _pointer(psi), _pointer(zbar),
        _pointer(beta), rho, kappa, _pointer(ebar), _pointer(eps_a), _pointer(signal), _pointer(active),
        _pointer(grad), _pointer(e_sum))
    if failed:
        raise OSError(failed, f"could not start the trace-pass thread: {os.strerror(failed)}")
    _in_flight = (psi, zbar, beta, ebar, eps_a, signal, active, grad, e_sum)


def eprop_traces_wait() -> None:
    """Return when the pass started by :func:`eprop_traces_start` (if any) is done."""
    global _in_flight
    lib = _load()
    if lib is not None:
        lib.eprop_traces_wait()
    _in_flight = ()
