"""Shared test fixtures (kept small: each test file builds its own networks)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import pytest
import torch

if not torch.cuda.is_available():
    # without a GPU, Triton's kernels are tested in its CPU interpreter; the mode is fixed when
    # triton.language is first imported, so it is set before any test module can import Triton
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def float64() -> Iterator[torch.dtype]:
    """Make float64 torch's default dtype for one test, so models are built in double precision."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield torch.float64
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture
def load_example() -> Callable[[str], ModuleType]:
    """Import a script from ``examples/`` by file name, for the slow reproduction tests."""
    def load(name: str) -> ModuleType:
        path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def sign_mlp() -> Callable[[list[int]], torch.nn.Module]:
    """An MLP of binary units: sign(a) has no usable derivative, so rules that need f′ refuse it."""
    import creditlab as cl

    def make(sizes: list[int]) -> torch.nn.Module:
        net = cl.models.MLP(sizes)
        net.activations = ("sign",) * (len(sizes) - 2)
        net.activation, net.fs = "sign", (torch.sign,) * (len(sizes) - 2)
        return net

    return make


@pytest.fixture
def numpy_codegen() -> Iterator[ModuleType]:
    """brian2 with its pure-numpy code generation (no compiler needed), restored afterwards."""
    b2 = pytest.importorskip("brian2")
    previous = b2.prefs.codegen.target
    b2.prefs.codegen.target = "numpy"
    try:
        yield b2
    finally:
        b2.prefs.codegen.target = previous
