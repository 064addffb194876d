"""The quantum tests run many small tensor operations: on cores that other processes keep
busy, a second torch thread makes each of them wait for a time slice (measured here: 2 ms
per training step on one thread, 70-100 ms on two). One thread keeps them fast; the
results do not depend on it."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
