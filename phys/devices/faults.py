"""What can go wrong on a virtual lab device's link, and what the emulator counts.

:class:`Faults` says how often each fault strikes a frame or the device; a fault-free
:class:`Faults` is the default. :class:`EmulatorStats` counts frames, faults and the lab
time a rig would have taken.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

from cobs import cobs

__all__ = ["EmulatorStats", "Faults", "corrupt", "seq_of"]


@dataclass(frozen=True)
class Faults:
    """Fault rates, each a probability per frame (``reset``, ``unplug``: per request).

    Args:
        drop: A frame vanishes on the link (either direction).
        corrupt: 1 to 3 bits of a frame flip on the link.
        duplicate: A frame arrives twice.
        delay: A frame arrives ``delay_seconds`` late (wall time); frames behind it on
            the same line wait for it (a serial line never reorders).
        reset: The device restarts before handling a request: the request is lost, its
            settings and remembered answer are gone, its ``boot`` number changes.
        unplug: The port closes and the emulator stops.
        delay_seconds: How late a delayed frame arrives.

    Examples::

        >>> Faults.parse("drop=0.01,corrupt=0.05")
        Faults(drop=0.01, corrupt=0.05, duplicate=0.0, delay=0.0, reset=0.0, unplug=0.0, \
delay_seconds=0.2)
    """

    drop: float = 0.0
    corrupt: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    reset: float = 0.0
    unplug: float = 0.0
    delay_seconds: float = 0.2

    KINDS = ("drop", "corrupt", "duplicate", "delay", "reset", "unplug")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"fault {f.name} must be a number >= 0, got {value!r}")
            if f.name != "delay_seconds" and value > 1:
                raise ValueError(f"fault {f.name} is a probability in [0, 1], got {value!r}")

    @classmethod
    def parse(cls, text: str) -> Faults:
        """``"drop=0.01,corrupt=0.01,..."`` (empty: no faults)."""
        values: dict[str, float] = {}
        known = [f.name for f in fields(cls)]
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in known:
                raise ValueError(f"bad fault {item!r}; expected KEY=VALUE with KEY one of "
                                 f"{', '.join(known)}")
            try:
                values[key.strip()] = float(value)
            except ValueError:
                raise ValueError(f"fault {key.strip()} needs a number, got {value!r}") from None
        return cls(**values)

    @property
    def any(self) -> bool:
        return any(getattr(self, k) > 0 for k in self.KINDS)


@dataclass
class EmulatorStats:
    """Link-side counts: frames and bytes each way, faults that struck (by kind and
    direction), answers refused for a full queue, and the modelled lab time.

    ``refused`` counts TCP connections turned away (every client place taken, or past
    the connection cap), ``cut_off`` connections closed for holding more than the buffer
    cap, ``overflow_bytes`` the bytes thrown away past that cap.
    """

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    busy: int = 0
    resets: int = 0
    unplugged: bool = False
    lab_seconds: float = 0.0
    measuring_seconds: float = 0.0
    overflow_bytes: int = 0
    refused: int = 0
    cut_off: int = 0

    def __post_init__(self) -> None:
        self.faults: dict[str, int] = {}

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "faults": dict(self.faults)}


def corrupt(frame: bytes, rng: random.Random) -> bytes:
    """``frame`` with one to three bits flipped at random."""
    data = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def seq_of(frame: bytes) -> int | None:
    """The ``seq`` of an encoded frame, or ``None`` when it cannot be read."""
    try:
        body = cobs.decode(frame)
    except cobs.DecodeError:
        return None
    return int.from_bytes(body[2:4], "little") if len(body) >= 4 else None
