"""Declared recording, in the manner of Brian2's StateMonitor/SpikeMonitor.

A monitor names a variable — a model local (``"spikes"``, ``"v"``, ``"a"``,
``"psi"``, ``"r"``, ``"h"``…), ``"outputs"``, or one of the attached rule's
traces (``"eligibility"``…) — and optionally a subset of neurons, synapses
and batch entries, so a 10 000-step run stores only what was asked for.
Buffers are allocated once, on the model's device; spikes are stored as bool.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import torch

#: monitor names that differ from the model's local field names
ALIASES = {"spikes": "z", "outputs": "y"}


@dataclass(frozen=True)
class Monitor:
    """Record ``name`` every step, optionally only some neurons/synapses/batch entries.

    ``neurons`` indexes the last axis of a ``[B, N]`` variable; ``synapses`` is a
    list of ``(post, pre)`` pairs for a ``[B, N_post, N_pre]`` trace.
    """

    name: str
    neurons: Sequence[int] | None = None
    synapses: Sequence[tuple[int, int]] | None = None
    batch: Sequence[int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"monitor name must be a non-empty string, got {self.name!r}")
        if self.neurons is not None and self.synapses is not None:
            raise ValueError(f"monitor {self.name!r}: give neurons= or synapses=, not both")


def as_monitors(monitors: Iterable[str | Monitor] | str | None) -> tuple[Monitor, ...]:
    if monitors is None:
        return ()
    if isinstance(monitors, (str, Monitor)):
        monitors = (monitors,)
    out = []
    for m in monitors:
        if isinstance(m, str):
            m = Monitor(m)
        if not isinstance(m, Monitor):
            raise TypeError(f"monitors must be names or Monitor objects, got {type(m).__name__}")
        out.append(m)
    return tuple(out)


class Record:
    """What the monitors stored: ``record.spikes`` is ``[T, B, N]`` (bool)."""

    def __init__(self, data: dict[str, torch.Tensor], dt: float) -> None:
        self._data = data
        self.dt = dt

    def __getattr__(self, name: str) -> torch.Tensor:
        data = self.__dict__.get("_data", {})
        if name in data:
            return data[name]
        raise AttributeError(f"nothing recorded as {name!r}; recorded: {sorted(data)}")

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.__getattr__(name)

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def keys(self) -> list[str]:
        return list(self._data)

    @property
    def times(self) -> torch.Tensor:
        """Time of each recorded step in seconds (end of the step)."""
        n = next(iter(self._data.values())).shape[0] if self._data else 0
        return torch.arange(1, n + 1, dtype=torch.float64) * self.dt


def monitored_batch(monitors: tuple[Monitor, ...], names: tuple[str, ...], batch: int) -> list[int]:
    """The batch entries that the monitors of ``names`` record, in order (all when one records every entry)."""
    wanted: set[int] = set()
    for monitor in monitors:
        if monitor.name not in names:
            continue
        if monitor.batch is None:
            return list(range(batch))
        entries = [int(b) for b in monitor.batch]
        if any(not 0 <= b < batch for b in entries):
            raise ValueError(f"monitor {monitor.name!r}: batch entries must be in [0, {batch - 1}], "
                             f"got {list(monitor.batch)}")
        wanted.update(entries)
    return sorted(wanted)


def record_sequences(monitors: tuple[Monitor, ...],
                     sequences: dict[str, tuple[torch.Tensor, list[int]]]) -> dict[str, torch.Tensor]:
    """Each monitor's record from whole-run values, as stepping would have stored it.

    ``sequences`` maps a local's field name (``"z"``, ``"y"``…) to its values
    ``[T, R, …]`` over the batch entries ``rows`` (R of them, in order).
    """
    records = {}
    for monitor in monitors:
        field = ALIASES.get(monitor.name, monitor.name)
        if field not in sequences:
            names = sorted({*(k for k, v in ALIASES.items() if v in sequences), *sequences})
            raise ValueError(f"monitor {monitor.name!r} names no variable recorded by this run; "
                             f"available: {', '.join(names)}")
        value, rows = sequences[field]
        if monitor.batch is not None:
            missing = [b for b in monitor.batch if int(b) not in rows]
            if missing:
                raise ValueError(f"monitor {monitor.name!r}: batch entries {missing} are not in the run "
                                 f"(it records {len(rows)}: {rows[:8]}{'…' if len(rows) > 8 else ''})")
            value = value[:, [rows.index(int(b)) for b in monitor.batch]]
        if monitor.synapses is not None:
            raise ValueError(f"monitor {monitor.name!r}: synapses= needs a [B, post, pre] variable, "
                             f"got shape {tuple(value.shape[1:])}")
        if monitor.neurons is not None:
            value = value[..., list(monitor.neurons)]
        records[monitor.name] = value
    return records


class Recorder:
    """Fills preallocated buffers for a set of monitors during one run."""

    def __init__(self, monitors: tuple[Monitor, ...], n_steps: int) -> None:
        self.monitors = monitors
        self.n_steps = n_steps
        self.buffers: dict[str, torch.Tensor] = {}
        self._index: dict[str, tuple] = {}

    def _source(self, monitor: Monitor, local: NamedTuple, y: torch.Tensor,
                traces: dict[str, torch.Tensor]) -> torch.Tensor:
        field = ALIASES.get(monitor.name, monitor.name)
        if field == "y":
            return y
        if field in getattr(local, "_fields", ()) and getattr(local, field) is not None:
            return getattr(local, field)
        if monitor.name in traces:
            return traces[monitor.name]
        available = [n for n in getattr(local, "_fields", ()) if getattr(local, n) is not None]
        names = sorted({*(k for k, v in ALIASES.items() if v in available or v == "y"),
                        *available, *traces})
        raise ValueError(f"monitor {monitor.name!r} names no variable of this model or rule; "
                         f"available: {', '.join(names)}")

    def _select(self, monitor: Monitor, value: torch.Tensor) -> torch.Tensor:
        if monitor.batch is not None:
            value = value[list(monitor.batch)]
        if monitor.neurons is not None:
            value = value[..., list(monitor.neurons)]
        elif monitor.synapses is not None:
            if value.dim() != 3:
                raise ValueError(f"monitor {monitor.name!r}: synapses= needs a [B, post, pre] variable, "
                                 f"got shape {tuple(value.shape)}")
            post, pre = zip(*monitor.synapses)
            value = value[:, list(post), list(pre)]
        return value

    @torch.no_grad()
    def record(self, t: int, local: NamedTuple, y: torch.Tensor, traces: dict[str, torch.Tensor]) -> None:
        for monitor in self.monitors:
            value = self._select(monitor, self._source(monitor, local, y, traces).detach())
            buffer = self.buffers.get(monitor.name)
            if buffer is None:
                dtype = torch.bool if monitor.name == "spikes" else value.dtype
                buffer = torch.empty((self.n_steps, *value.shape), dtype=dtype, device=value.device)
                self.buffers[monitor.name] = buffer
            buffer[t] = value

    def result(self, dt: float) -> Record:
        return Record(dict(self.buffers), dt)
