"""Checks of what a device declares: its :class:`~phys.DeviceInfo` and parameters."""

from __future__ import annotations

import json
import math
from dataclasses import fields

from phys.device import Device, DeviceInfo, ParamSpec
from phys.testing.core import Broken, CheckContext, check, expect

__all__ = ["check_declared_params", "check_info", "check_info_json"]


@check("info")
def check_info(device: Device, context: CheckContext) -> None:
    """``device.info`` is a :class:`~phys.DeviceInfo`."""
    info = getattr(device, "info", None)
    expect(isinstance(info, DeviceInfo), f"info is {type(info).__name__}, "
           f"not a phys.DeviceInfo")


def _differences(a: DeviceInfo, b: DeviceInfo) -> list[str]:
    out = []
    for f in fields(DeviceInfo):
        if f.name == "extra":
            continue
        if getattr(a, f.name) != getattr(b, f.name):
            was, now = getattr(a, f.name), getattr(b, f.name)
            out.append(f"{f.name} reads back as {now!r}, was {was!r}")
    for key in sorted(set(a.extra) | set(b.extra)):
        was, now = a.extra.get(key, "<missing>"), b.extra.get(key, "<missing>")
        if was != now:
            out.append(f"extra[{key!r}] reads back as {now!r}, was {was!r}")
    return out


@check("info-json")
def check_info_json(device: Device, context: CheckContext) -> None:
    """``info.as_dict()`` is JSON-serialisable and :meth:`~phys.DeviceInfo.from_dict` reads
    it back equal to ``info`` (so run directories can record the device)."""
    info = device.info
    try:
        text = json.dumps(info.as_dict())
    except (TypeError, ValueError) as err:
        raise Broken(f"info.as_dict() is not JSON-serialisable: {err}") \
            from None
    back = DeviceInfo.from_dict(json.loads(text))
    expect(back == info, "the JSON round trip changed the info: "
           + "; ".join(_differences(info, back) or ["equality failed"]))


@check("declared-params", skip=lambda info, _: None if info.params else
       "info.params is empty: no settable parameters")
def check_declared_params(device: Device, context: CheckContext) -> None:
    """Every ``info.params`` entry is a :class:`~phys.ParamSpec` with finite ``min <= max``
    and a shape of positive ints."""
    for p in device.info.params:
        expect(isinstance(p, ParamSpec),
               f"params entry {p!r} is a {type(p).__name__}, not a phys.ParamSpec")
        lo, hi = p.min, p.max
        expect(math.isfinite(lo) and math.isfinite(hi) and lo <= hi,
               f"parameter {p.name!r} needs finite min <= max, got {lo!r}, {hi!r}")
        expect(all(isinstance(n, int) and n >= 1 for n in p.shape),
               f"parameter {p.name!r} has shape {p.shape!r}, not positive ints")
