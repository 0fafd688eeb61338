"""Peak-memory measurement for benchmarks and ``creditlab compare``.

On CUDA the allocator's own peak counter is exact.  On Linux CPUs the kernel
keeps a resident-set high-water mark (VmHWM) that can be reset by writing 5
to ``/proc/self/clear_refs``; the peak of a block is then VmHWM minus the RSS
before it.  Elsewhere the measurement is unavailable (``None``) rather than
guessed.

The CPU figure counts pages the block newly made resident: memory that the
allocator recycles from earlier work in the same process is not seen, so
measure in a fresh process (as ``creditlab compare`` and the benchmarks do).
"""
from __future__ import annotations

from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mib`` (MiB above the start, or None)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.mib: float | None = None
        self._before: int | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
            return self
        try:
            _CLEAR.write_text("5")
            self._before = _status_kib("VmRSS")
        except OSError:
            self._before = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._before is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self._before) / 2**20
            return
        peak = _status_kib("VmHWM")
        self.mib = None if peak is None else max(peak - self._before, 0) / 1024
