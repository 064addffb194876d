"""Find devices by name: built-in simulators plus the ``phys.devices`` entry-point group.

Third-party packages add a device by declaring, in their ``pyproject.toml``::

    [project.entry-points."phys.devices"]
    mydevice = "mypackage.module:MyDevice"

``MyDevice(**options)`` must return a :class:`phys.Device`.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from phys.device import Device

__all__ = ["open", "available", "factory"]

ENTRY_POINT_GROUP = "phys.devices"

#: Devices that ship with physnn: name -> "module:attribute".
BUILTIN: dict[str, str] = {
    "cavity": "phys.simulators.cavity:Cavity",
    "optics": "phys.simulators.optics:Optics",
    "oscillators": "phys.simulators.oscillators:Oscillators",
    "wave2d": "phys.simulators.wave2d:Wave2D",
}


#: Specs that are addresses rather than names: URL scheme -> "module:function".
#: The function is called as ``opener(spec, **options)`` and returns a Device.
OPENERS: dict[str, str] = {
    "pennylane": "phys.devices.quantum:open_pennylane",
    "serial": "phys.devices.serial:open_address",  # serial:///dev/ttyACM0, or a bare port path
    "socket": "phys.devices.serial:open_address",  # socket://host:port
    "auto": "phys.devices.serial:open_auto",  # the first serial port that answers HELLO
}


def _opener_for(spec: str) -> str | None:
    scheme, sep, _ = spec.partition(":")
    if sep and scheme in OPENERS:
        return OPENERS[scheme]
    if spec in OPENERS:  # a bare word such as "auto"
        return OPENERS[spec]
    if spec.startswith("/") or spec.upper().startswith("COM"):  # a serial port path
        return OPENERS.get("serial")
    return None


def _resolve(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        found = getattr(found, part)
    return found


def available() -> dict[str, str]:
    """Every known device name mapped to its ``"module:attribute"`` target, sorted."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return dict(sorted(found.items()))


def load(name: str) -> type[Device]:
    """The device class registered under ``name``."""
    known = available()
    if name not in known:
        raise ValueError(
            f"unknown device {name!r}; known devices: {', '.join(known) or '(none)'}"
        )
    return _resolve(known[name])


def factory(spec: str) -> Callable[..., Device]:
    """What :func:`open` calls with the options for ``spec``: the registered device class,
    or for an address its opener with ``spec`` already bound (inspect it to see which
    options a device takes).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    opener = _opener_for(spec)
    if opener is not None:
        return functools.partial(_resolve(opener), spec)
    return load(spec)


def open(spec: str, **options: Any) -> Device:  # noqa: A001 - mirrors the builtin on purpose
    """Open a device by registry name, e.g. ``phys.open("cavity", n_in=16, seed=0)``.

    Args:
        spec: A registered device name (see ``phys devices``), or an address whose
            scheme is in :data:`OPENERS`.
        **options: Keyword arguments of that device's constructor.

    Raises:
        ValueError: unknown name (the message lists the known ones) or bad options.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"device spec must be a non-empty string, got {spec!r}")
    opener = _opener_for(spec)
    if opener is not None:
        device = _resolve(opener)(spec, **options)
        if not isinstance(device, Device):
            raise TypeError(f"{spec!r} produced {type(device).__name__}, not a phys.Device")
        return device
    cls = load(spec)
    try:
        device = cls(**options)
    except TypeError as err:
        raise ValueError(f"bad options for device {spec!r}: {err}") from None
    if not isinstance(device, Device):
        raise TypeError(f"{spec!r} produced {type(device).__name__}, not a phys.Device")
    return device
