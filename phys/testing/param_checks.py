"""Checks of a device's settable physical parameters: ``set`` / ``get`` round trips and
the refusal of bad settings."""

from __future__ import annotations

import math

import torch

from phys.device import Device, DeviceInfo, ParamSpec
from phys.testing.core import Broken, CheckContext, check, expect

__all__ = ["check_params_reject", "check_params_round_trip", "other_value"]

#: A name no device should declare.
UNKNOWN = "no-such-parameter"


def _no_params(info: DeviceInfo, has_factory: bool) -> str | None:
    return None if info.params else "info.params is empty: no settable parameters"


def other_value(spec: ParamSpec, current: torch.Tensor | None) -> torch.Tensor:
    """An in-range value of ``spec``'s shape, a quarter of the range or more away from
    ``current`` in every element (float64): ``min + (max - min) / 4`` or ``... * 3 / 4``,
    whichever is farther; alternating by element when ``current`` is unknown."""
    lo, hi = spec.min, spec.max
    a, b = lo + 0.25 * (hi - lo), lo + 0.75 * (hi - lo)
    if current is None:
        pattern = torch.arange(math.prod(spec.shape)).reshape(spec.shape) % 2 == 0
        return torch.where(pattern, a, b).double()
    cur = current.detach().double().reshape(spec.shape).cpu()
    return torch.where((cur - a).abs() >= (cur - b).abs(), a, b).double()


def _same(got: torch.Tensor, want: torch.Tensor, spec: ParamSpec) -> bool:
    """Equal up to float32 rounding of values of the range's magnitude."""
    got = torch.as_tensor(got).detach().double().cpu().reshape(-1)
    want = want.detach().double().cpu().reshape(-1)
    scale = max(1.0, abs(spec.min), abs(spec.max))
    return got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-6,
                                                           atol=1e-6 * scale))


def _answers_alike(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    scale = float(b.nan_to_num().abs().max()) if b.numel() else 0.0
    return torch.allclose(a, b, rtol=1e-3, atol=1e-3 * scale, equal_nan=True)


def _setter(device: Device) -> tuple[object, object | None]:
    set_ = getattr(device, "set", None)
    expect(callable(set_), "info.params declares parameters but the device has no set()")
    get = getattr(device, "get", None)
    return set_, get if callable(get) else None


def _known(get: object | None, name: str) -> torch.Tensor | None:
    """``get(name)``, or ``None`` where the device has no get or does not know the value
    yet (a rig that does not report its power-up settings: ``get`` raises ValueError
    until the value is set)."""
    if get is None:
        return None
    try:
        return torch.as_tensor(get(name))
    except ValueError:
        return None


@check("params-round-trip", skip=_no_params)
def check_params_round_trip(device: Device, context: CheckContext) -> None:
    """For every declared parameter: ``get`` gives a value of the declared shape inside
    its range; ``set`` of another in-range value is what ``get`` then gives and the device
    still answers; setting the first value back restores it, and (unless stochastic)
    the device answers as before. A device without ``get`` (or whose ``get`` does not
    know a value before it is set) must repeat its answer to a value set again after
    another one."""
    info = device.info
    set_, get = _setter(device)
    x = context.inputs(info, 3)
    for spec in info.params:
        before = device.query(x)
        original = _known(get, spec.name)
        if original is not None:
            shape = tuple(torch.as_tensor(original).shape)
            expect(shape == spec.shape, f"get({spec.name!r}) has shape {shape}, declared "
                   f"{spec.shape}")
            inside = bool(((original >= spec.min) & (original <= spec.max)).all())
            expect(inside, f"get({spec.name!r}) is outside [{spec.min}, {spec.max}]")
        new = other_value(spec, original)
        set_(spec.name, new)
        if get is not None:
            expect(_same(get(spec.name), new, spec), f"set({spec.name!r}, v) then get() "
                   f"did not give v back")
        answer = device.query(x)
        if original is None:
            set_(spec.name, other_value(spec, new))
            set_(spec.name, new)
            again = device.query(x)
            expect(info.stochastic or _answers_alike(again, answer),
                   f"the same {spec.name!r} set again gave another answer")
            continue
        set_(spec.name, original)
        expect(_same(get(spec.name), original, spec), f"setting {spec.name!r} back did not "
               f"restore it")
        after = device.query(x)
        expect(info.stochastic or _answers_alike(after, before),
               f"with {spec.name!r} set back, the device answers otherwise than before")


def _bad_settings(spec: ParamSpec) -> list[tuple[str, object]]:
    margin = max(1.0, abs(spec.max), abs(spec.min))
    mid = (spec.min + spec.max) / 2
    nan = torch.full(spec.shape, mid, dtype=torch.float64)
    nan.view(-1)[0] = math.nan
    return [
        ("a value above max", torch.full(spec.shape, spec.max + margin, dtype=torch.float64)),
        ("a value below min", torch.full(spec.shape, spec.min - margin, dtype=torch.float64)),
        ("a NaN", nan),
        ("one value too many", torch.full((math.prod(spec.shape) + 1,), mid,
                                          dtype=torch.float64)),
        ("a string", "not numbers"),
    ]


@check("params-reject", skip=_no_params)
def check_params_reject(device: Device, context: CheckContext) -> None:
    """``set`` refuses with a ValueError (with a message) an unknown name, and for every
    declared parameter a value above ``max`` or below ``min``, a NaN, the wrong number of
    values and a non-number; ``get`` of an unknown name is refused too, and a refused
    setting changes nothing."""
    info = device.info
    set_, get = _setter(device)
    first = info.params[0]
    cases = [(UNKNOWN, "an unknown name", torch.full(first.shape, first.min))]
    cases += [(spec.name, what, value) for spec in info.params
              for what, value in _bad_settings(spec)]
    before = {p.name: v for p in info.params if (v := _known(get, p.name)) is not None}
    queries = device.stats.queries
    for name, what, value in cases:
        try:
            set_(name, value)
        except ValueError as err:
            expect(str(err) != "", f"set({name!r}, {what}): ValueError without a message")
        else:
            raise Broken(f"set({name!r}, {what}) was accepted, expected ValueError")
    if get is not None:
        try:
            get(UNKNOWN)
        except ValueError:
            pass
        else:
            raise Broken(f"get({UNKNOWN!r}) was accepted, expected ValueError")
        for spec in (p for p in info.params if p.name in before):
            expect(_same(get(spec.name), before[spec.name], spec),
                   f"a refused setting changed {spec.name!r}")
    expect(device.stats.queries == queries, "a refused setting reached the device")
