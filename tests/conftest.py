"""Shared test fixtures (kept small: each test file builds its own networks)."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture
def float64() -> Iterator[torch.dtype]:
    """Make float64 torch's default dtype for one test, so models are built in double precision."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield torch.float64
    finally:
        torch.set_default_dtype(previous)
