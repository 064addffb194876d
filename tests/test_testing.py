"""The shipped conformance suite: passes good devices, catches broken ones."""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest
import torch

from phys.device import Device, DeviceInfo
from phys.simulators.cavity import Cavity
from phys.testing import ConformanceError, check_device

CAVITY = dict(n_in=6, n_out=5, n_scatterers=16, max_batch=32, seed=3)


class Good(Device):
    """A correct deterministic device: ``y = tanh(x @ W)``."""

    def __init__(self, seed: int = 0, max_batch: int = 8) -> None:
        super().__init__()
        self.info = DeviceInfo(name="good", n_in=3, n_out=2, in_min=0.0, in_max=2.0,
                               max_batch=max_batch)
        self.w = torch.randn(3, 2, generator=torch.Generator().manual_seed(seed))

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w)


class NoRangeCheck(Good):
    """Clips out-of-range inputs instead of rejecting them."""

    def query(self, x):
        x = torch.as_tensor(x)
        if x.is_floating_point() and torch.isfinite(x).all():
            x = x.clamp(self.info.in_min, self.info.in_max)
        return super().query(x)


class SecretlyNoisy(Good):
    """Adds noise while ``info.stochastic`` says it does not."""

    def query(self, x):
        y = super().query(x)
        return y + 1e-3 * torch.randn(y.shape)


class CloseDoesNotStop(Good):
    """Still answers after ``close()``."""

    def query(self, x):
        closed, self._closed = self._closed, False
        try:
            return super().query(x)
        finally:
            self._closed = closed


class Float64Out(Good):
    def query(self, x):
        return super().query(x).double()


class SingleKeepsBatchDim(Good):
    """Answers ``(1, n_out)`` for an ``(n_in,)`` input."""

    def query(self, x):
        y = super().query(x)
        return y.unsqueeze(0) if y.ndim == 1 else y


class IgnoresMaxBatch(Good):
    """Sends the whole batch in one round trip."""

    def query(self, x):
        max_batch = self.info.max_batch
        object.__setattr__(self.info, "max_batch", 1 << 30)
        try:
            return super().query(x)
        finally:
            object.__setattr__(self.info, "max_batch", max_batch)


class KeepsGraph(Good):
    def query(self, x):
        x = torch.as_tensor(x)
        y = super().query(x)
        return y + 0 * x.sum() if x.requires_grad else y


class CountsRejected(Good):
    """Counts a round trip before validating: bad input 'reaches the device'."""

    def query(self, x):
        self.stats.queries += 1
        return super().query(x)


class ForgetsStats(Good):
    """Does not count what it measured."""

    def query(self, x):
        before = dataclasses.replace(self.stats)
        try:
            return super().query(x)
        finally:
            self.stats = before


def test_good_device_passes() -> None:
    passed = check_device(Good(), reopen=Good)
    for name in ("shape", "no-grad", "reject-nan", "deterministic", "batch-split", "seeded",
                 "close"):
        assert name in passed


@pytest.mark.parametrize(("broken", "check"), [
    (NoRangeCheck, "reject-above-range"),
    (SecretlyNoisy, "deterministic"),
    (CloseDoesNotStop, "close"),
    (Float64Out, "dtype"),
    (SingleKeepsBatchDim, "single"),
    (IgnoresMaxBatch, "batch-split"),
    (KeepsGraph, "no-grad"),
    (CountsRejected, "reject-nan"),
    (ForgetsStats, "stats"),
])
def test_broken_device_is_caught(broken: type[Good], check: str) -> None:
    with pytest.raises(ConformanceError, match=f"^{check}:"):
        check_device(broken())


def test_good_device_with_small_max_batch_passes() -> None:
    check_device(Good(max_batch=4))


def test_reopen_with_other_seed_is_caught() -> None:
    with pytest.raises(ConformanceError, match="^seeded:"):
        check_device(Good(seed=0), reopen=partial(Good, seed=1))


def test_cavity_conforms() -> None:
    passed = check_device(Cavity(**CAVITY), reopen=partial(Cavity, **CAVITY))
    assert {"deterministic", "batch-independence", "batch-split", "seeded"} <= set(passed)


def test_noisy_cavity_conforms() -> None:
    dev = Cavity(**CAVITY, noise=0.05)
    assert dev.info.stochastic
    passed = check_device(dev, reopen=partial(Cavity, **CAVITY, noise=0.05))
    assert "batch-split" in passed and "close" in passed
    assert "deterministic" not in passed and "seeded" not in passed


def test_check_device_closes_device() -> None:
    dev = Good()
    check_device(dev)
    assert dev.closed
