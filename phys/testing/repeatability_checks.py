"""Checks that answers repeat: in time, across batches, across split batches and devices."""

from __future__ import annotations

import torch

from phys.device import Device, DeviceInfo
from phys.testing.core import (
    CheckContext,
    any_of,
    check,
    close_enough,
    expect,
    if_stochastic,
    without_factory,
)

__all__ = ["SPLIT_CHECK_LIMIT", "check_batch_independence", "check_batch_split",
           "check_deterministic", "check_seeded"]

#: Largest ``max_batch`` for which the batch-splitting check sends ``max_batch + 1`` rows.
SPLIT_CHECK_LIMIT = 16384


@check("deterministic", skip=if_stochastic)
def check_deterministic(device: Device, context: CheckContext) -> None:
    """A device that is not ``info.stochastic`` answers one input the same, bit for bit."""
    x = context.inputs(device.info, 5)
    first = device.query(x)
    expect(torch.equal(device.query(x), first),
           "same input gave different output")


@check("batch-independence", skip=if_stochastic)
def check_batch_independence(device: Device, context: CheckContext) -> None:
    """A row's answer does not depend on the rest of its batch (up to an iterative
    solver's tolerance)."""
    x = context.inputs(device.info, 5)
    together = device.query(x)
    alone = torch.stack([device.query(row) for row in x])
    expect(close_enough(alone, together),
           "a row's answer depends on the rest of its batch")


def _too_big(info: DeviceInfo, has_factory: bool) -> str | None:
    if info.max_batch > SPLIT_CHECK_LIMIT:
        return f"max_batch={info.max_batch} > {SPLIT_CHECK_LIMIT}: too many rows to send"
    return None


@check("batch-split", skip=_too_big)
def check_batch_split(device: Device, context: CheckContext) -> None:
    """``max_batch + 1`` rows take two round trips and come back in order (a deterministic
    device's first and last rows equal those rows queried alone)."""
    info = device.info
    n = info.max_batch + 1
    big = context.inputs(info, n)
    before = device.stats.queries
    out = device.query(big)
    expect(tuple(out.shape) == (n, info.n_out),
           f"{n} rows gave {tuple(out.shape)}")
    trips = device.stats.queries - before
    expect(trips == 2, f"max_batch + 1 rows took {trips} queries, expected 2")
    if not info.stochastic:
        ends = torch.tensor([0, n - 1])
        expect(close_enough(out[ends], device.query(big[ends])),
               "rows of a split batch differ from the same rows queried alone")


@check("seeded", skip=any_of(if_stochastic, without_factory))
def check_seeded(device: Device, context: CheckContext) -> None:
    """A second device opened with the same settings (the factory) answers the same."""
    assert context.factory is not None  # the skip rule says so
    x = context.inputs(device.info, 5)
    mine = device.query(x)
    twin = context.factory()
    try:
        theirs = twin.query(x)
    finally:
        twin.close()
    expect(torch.equal(theirs, mine), "a fresh device answered differently")
