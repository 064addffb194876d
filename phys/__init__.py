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
    "open": "phys.registry",
    "PhysicalLayer": "phys.layers",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'phys' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
