"""Checks of a device's life: reopening, the context manager and closing."""

from __future__ import annotations

import torch

from phys.device import Device, DeviceUnavailable
from phys.testing.core import Broken, CheckContext, check, expect

__all__ = ["check_close", "check_context_manager", "check_reopen"]


@check("reopen")
def check_reopen(device: Device, context: CheckContext) -> None:
    """A ``recoverable`` device's :meth:`~phys.Device.reopen` works and the device then
    answers as before (the same, unless it is stochastic); any other device's ``reopen()``
    raises :class:`~phys.DeviceUnavailable`."""
    info = device.info
    x = context.inputs(info, 3)
    before = device.query(x)
    if not info.recoverable:
        try:
            device.reopen()
        except DeviceUnavailable:
            return
        raise Broken("info.recoverable is False but reopen() did not raise "
                               "phys.DeviceUnavailable")
    device.reopen()
    after = device.query(x)
    expect(tuple(after.shape) == tuple(before.shape),
           f"after reopen() the answer has shape {tuple(after.shape)}")
    if not info.stochastic:
        expect(torch.equal(after, before), "after reopen() the same input gave a "
               "different output")


@check("context-manager")
def check_context_manager(device: Device, context: CheckContext) -> None:
    """``with device as d`` gives the device itself and closes it on leaving."""
    with device as same:
        expect(same is device, "__enter__ did not return the device")
    expect(device.closed, "leaving the context did not close the device")


@check("close")
def check_close(device: Device, context: CheckContext) -> None:
    """``close()`` closes the device, calling it again does nothing, and a closed device
    refuses queries with a RuntimeError."""
    x = context.inputs(device.info, 2)
    device.close()
    expect(device.closed, "close() did not set closed")
    device.close()  # idempotent
    try:
        device.query(x)
    except RuntimeError:
        return
    raise Broken("a closed device still answered")
