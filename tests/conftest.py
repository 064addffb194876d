"""Shared fixtures. Tests that read real datasets find them in $PHYS_DATA or ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# One torch thread per test process (and per process a test starts), unless a test is
# about threads: the suite runs on 2 shared cores, where more threads only wait.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Training runs many small steps: a second torch thread only waits on busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _shared_data() -> Path:
    return Path(os.environ.get("PHYS_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    return _shared_data()


@pytest.fixture(scope="session")
def shared_data_session() -> Path:
    """``shared_data`` for module- and session-scoped fixtures (read-only: never write there)."""
    return _shared_data()
