"""physnn: train neural networks whose layers are physical systems.

Heavy dependencies (torch) load on first use of an attribute, so ``phys --help``
stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Device": "phys.device",
    "DeviceInfo": "phys.device",
    "DeviceStats": "phys.device",
    "DeviceUnavailable": "phys.device",
    "ParamSpec": "phys.device",
    "DeviceSpec": "phys.registry",
    "open": "phys.registry",
    "PhysicalLayer": "phys.layers",
    "DeviceLayer": "phys.nn",
    "load_run": "phys.load",
}

#: Subpackages that ``import phys`` makes reachable as attributes, loaded on first use.
_SUBMODULES = ("data", "devices", "nn", "quantum", "recording", "registry", "simulators",
               "testing", "train")

__all__ = [*_LAZY, *_SUBMODULES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"phys.{name}")
    else:
        raise AttributeError(f"module 'phys' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
