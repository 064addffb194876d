"""Conformance suite for devices, shipped in the package.

Every device - in this project or in a plugin - should pass :func:`check_device`::

    from phys.testing import check_device
    check_device(MyDevice(), reopen=MyDevice)

It raises :class:`ConformanceError` at the first broken promise of the
:class:`~phys.Device` contract and returns the list of checks that ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from phys.device import Device, DeviceInfo

__all__ = ["ConformanceError", "check_device"]

#: Largest ``max_batch`` for which the batch-splitting check sends ``max_batch + 1`` rows.
SPLIT_CHECK_LIMIT = 16384


#: Relative agreement asked of one row queried alone and in a batch. Iterative solvers
#: stop at a tolerance that can depend on the rest of the batch.
NUMERIC_RTOL = 1e-3


class ConformanceError(AssertionError):
    """A device broke the contract; the message says which check and how."""


def _inputs(info: DeviceInfo, rows: int, gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(rows, info.n_in, generator=gen, dtype=torch.float64)
    return (info.in_min + u * (info.in_max - info.in_min)).float()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to the tolerance of an iterative solver: NUMERIC_RTOL of the scale."""
    scale = float(b.abs().max()) if b.numel() else 0.0
    return torch.allclose(a, b, rtol=NUMERIC_RTOL, atol=NUMERIC_RTOL * scale)


def _expect(condition: bool, check: str, detail: str) -> None:
    if not condition:
        raise ConformanceError(f"{check}: {detail}")


def _expect_rejected(device: Device, x: object, check: str) -> None:
    before = device.stats.queries
    try:
        device.query(x)
    except ValueError as err:
        _expect(str(err) != "", check, "ValueError without a message")
    else:
        raise ConformanceError(f"{check}: accepted, expected ValueError")
    _expect(device.stats.queries == before, check, "bad input reached the device")


def check_device(
    device: Device,
    *,
    reopen: Callable[[], Device] | None = None,
    seed: int = 0,
) -> list[str]:
    """Check that ``device`` honours the :class:`~phys.Device` contract; closes it.

    Args:
        device: An open device. It is closed when the checks finish.
        reopen: Optional factory for a fresh device with the same settings; for
            non-stochastic devices, its answers must equal ``device``'s (determinism
            under a seed).
        seed: Seeds the random test inputs.

    Returns:
        Names of the checks that ran and passed.

    Raises:
        ConformanceError: naming the first check that failed.
    """
    passed: list[str] = []
    info = device.info
    gen = torch.Generator().manual_seed(seed)

    _expect(isinstance(info, DeviceInfo), "info", f"info is {type(info).__name__}")
    passed.append("info")

    # shapes and dtypes
    x = _inputs(info, 5, gen)
    y = device.query(x)
    _expect(isinstance(y, torch.Tensor), "shape", f"query returned {type(y).__name__}")
    _expect(tuple(y.shape) == (5, info.n_out), "shape", f"(5, n_in) gave {tuple(y.shape)}")
    _expect(y.dtype == torch.float32, "dtype", f"output dtype {y.dtype}")
    _expect(bool(torch.isfinite(y).all()), "finite", "output has NaN or Inf")
    y1 = device.query(x[0])
    _expect(tuple(y1.shape) == (info.n_out,), "single", f"(n_in,) gave {tuple(y1.shape)}")
    y64 = device.query(x.double())
    _expect(y64.dtype == torch.float32, "dtype", "float64 input did not give float32")
    passed += ["shape", "dtype", "finite", "single"]

    # no autograd graph, even for inputs that require grad
    y_grad = device.query(x.clone().requires_grad_(True))
    _expect(not y_grad.requires_grad and y_grad.grad_fn is None, "no-grad",
            "query output carries an autograd graph")
    passed.append("no-grad")

    # range boundaries are inclusive
    edges = torch.stack([torch.full((info.n_in,), info.in_min),
                         torch.full((info.n_in,), info.in_max)])
    try:
        edge_out = device.query(edges)
    except ValueError as err:
        raise ConformanceError(f"range-inclusive: in_min / in_max rows refused: {err}") from err
    _expect(tuple(edge_out.shape) == (2, info.n_out), "range-inclusive",
            f"in_min / in_max rows gave {tuple(edge_out.shape)}")
    passed.append("range-inclusive")

    # validation: errors before anything reaches the device
    nan = x.clone()
    nan[1, 0] = float("nan")
    inf = x.clone()
    inf[0, -1] = float("inf")
    high = x.clone()
    high[2, 0] = info.in_max + max(1.0, abs(info.in_max))
    low = x.clone()
    low[0, 0] = info.in_min - max(1.0, abs(info.in_min))
    bad = {
        "reject-nan": nan,
        "reject-inf": inf,
        "reject-above-range": high,
        "reject-below-range": low,
        "reject-wrong-width": torch.zeros(3, info.n_in + 1),
        "reject-3d": torch.zeros(2, 2, info.n_in),
        "reject-scalar": torch.tensor(0.0),
        "reject-int-dtype": torch.zeros(3, info.n_in, dtype=torch.int64),
        "reject-complex-dtype": torch.zeros(3, info.n_in, dtype=torch.complex64),
        "reject-non-array": "not an array",
    }
    for name, value in bad.items():
        _expect_rejected(device, value, name)
        passed.append(name)

    # empty batch
    empty = device.query(torch.zeros(0, info.n_in))
    _expect(tuple(empty.shape) == (0, info.n_out), "empty", f"gave {tuple(empty.shape)}")
    passed.append("empty")

    # stats
    before = (device.stats.queries, device.stats.samples)
    device.query(x)
    _expect(device.stats.samples == before[1] + 5, "stats", "samples not counted")
    round_trips = math.ceil(5 / info.max_batch)
    _expect(device.stats.queries == before[0] + round_trips, "stats",
            f"5 rows with max_batch={info.max_batch} counted "
            f"{device.stats.queries - before[0]} queries, expected {round_trips}")
    _expect(device.stats.wall_seconds >= 0, "stats", "negative wall seconds")
    passed.append("stats")

    # determinism and batch splitting
    deterministic = not info.stochastic
    if deterministic:
        again = device.query(x)
        _expect(torch.equal(again, y), "deterministic", "same input gave different output")
        passed.append("deterministic")
        rows = torch.cat([device.query(x[i]).unsqueeze(0) for i in range(len(x))])
        _expect(_close(rows, y), "batch-independence",
                "a row's answer depends on the rest of its batch")
        passed.append("batch-independence")
    if info.max_batch <= SPLIT_CHECK_LIMIT:
        n = info.max_batch + 1
        big = _inputs(info, n, gen)
        q0 = device.stats.queries
        out = device.query(big)
        _expect(tuple(out.shape) == (n, info.n_out), "batch-split", f"gave {tuple(out.shape)}")
        _expect(device.stats.queries - q0 == 2, "batch-split",
                f"max_batch + 1 rows took {device.stats.queries - q0} queries, expected 2")
        if deterministic:
            tail = device.query(big[-1:])
            _expect(_close(out[-1:], tail), "batch-split",
                    "rows of a split batch differ from the same rows queried alone")
        passed.append("batch-split")

    if reopen is not None and deterministic:
        with reopen() as twin:
            _expect(torch.equal(twin.query(x), y), "seeded", "a fresh device answered differently")
        passed.append("seeded")

    # close
    with device as same:
        _expect(same is device, "context-manager", "__enter__ did not return the device")
    _expect(device.closed, "close", "leaving the context did not close the device")
    device.close()  # idempotent
    try:
        device.query(x)
    except RuntimeError:
        pass
    else:
        raise ConformanceError("close: a closed device still answered")
    passed += ["context-manager", "close"]
    return passed
