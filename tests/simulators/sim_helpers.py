"""Helpers shared by the simulator tests (imported by name: pytest puts this folder on
``sys.path``)."""

from __future__ import annotations

import torch

from phys.device import Device


def uniform(dev: Device, rows: int, seed: int = 0, shrink: float = 1.0) -> torch.Tensor:
    """float64 inputs uniform over ``shrink`` times the device range (centred)."""
    i = dev.info
    u = torch.rand(rows, i.n_in, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    mid, half = (i.in_min + i.in_max) / 2, shrink * (i.in_max - i.in_min) / 2
    return mid + (2 * u - 1) * half


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest ``|b|`` (real or complex)."""
    a, b = (t if t.is_complex() else t.double() for t in (a, b))
    return float((a - b).abs().max() / b.abs().max())
