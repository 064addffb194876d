"""Checks that bad input raises a :class:`ValueError` before anything reaches the device."""

from __future__ import annotations

from collections.abc import Callable

import torch

from phys.device import Device, DeviceInfo
from phys.testing.core import Broken, Check, CheckContext, expect

__all__ = ["check_reject_3d", "check_reject_above_range", "check_reject_below_range",
           "check_reject_complex_dtype", "check_reject_inf", "check_reject_int_dtype",
           "check_reject_nan", "check_reject_non_array", "check_reject_scalar",
           "check_reject_wrong_width"]

#: ``bad(good_batch, info)`` -> an input the device must refuse.
BadInput = Callable[[torch.Tensor, DeviceInfo], object]


def rejection(name: str, bad: BadInput, doc: str) -> Check:
    """The check called ``name``: ``query(bad(x, info))`` raises a ValueError with a
    message, and ``stats.queries`` does not move (nothing reached the device)."""
    def run(device: Device, context: CheckContext) -> None:
        value = bad(context.inputs(device.info, 5), device.info)
        before = device.stats.queries
        try:
            device.query(value)
        except ValueError as err:
            expect(str(err) != "", "ValueError without a message")
        else:
            raise Broken("accepted, expected ValueError")
        expect(device.stats.queries == before, "bad input reached the device")

    run.__doc__ = doc
    run.__name__ = "check_" + name.replace("-", "_")
    return Check(name, run)


def _with(x: torch.Tensor, index: tuple[int, int], value: float) -> torch.Tensor:
    x = x.clone()
    x[index] = value
    return x


def _margin(bound: float) -> float:
    return max(1.0, abs(bound))


def _inside(shape: tuple[int, ...], info: DeviceInfo, dtype: torch.dtype = torch.float32,
            ) -> torch.Tensor:
    """Values in the middle of the range, so that only the shape or dtype is wrong."""
    mid = (info.in_min + info.in_max) / 2
    return torch.full(shape, round(mid) if not dtype.is_floating_point and not dtype.is_complex
                      else mid, dtype=dtype)


check_reject_nan = rejection(
    "reject-nan", lambda x, info: _with(x, (1, 0), float("nan")), "A NaN is refused.")
check_reject_inf = rejection(
    "reject-inf", lambda x, info: _with(x, (0, -1), float("inf")), "An Inf is refused.")
check_reject_above_range = rejection(
    "reject-above-range", lambda x, info: _with(x, (2, 0), info.in_max + _margin(info.in_max)),
    "A value above ``in_max`` is refused.")
check_reject_below_range = rejection(
    "reject-below-range", lambda x, info: _with(x, (0, 0), info.in_min - _margin(info.in_min)),
    "A value below ``in_min`` is refused.")
check_reject_wrong_width = rejection(
    "reject-wrong-width", lambda x, info: _inside((3, info.n_in + 1), info),
    "A batch of ``n_in + 1`` columns is refused.")
check_reject_3d = rejection(
    "reject-3d", lambda x, info: _inside((2, 2, info.n_in), info), "A 3-D input is refused.")
check_reject_scalar = rejection(
    "reject-scalar", lambda x, info: _inside((), info), "A 0-D input is refused.")
check_reject_int_dtype = rejection(
    "reject-int-dtype", lambda x, info: _inside((3, info.n_in), info, torch.int64),
    "An integer tensor is refused.")
check_reject_complex_dtype = rejection(
    "reject-complex-dtype", lambda x, info: _inside((3, info.n_in), info, torch.complex64),
    "A complex tensor is refused.")
check_reject_non_array = rejection(
    "reject-non-array", lambda x, info: "not an array", "A value that is not array-like is "
    "refused.")
