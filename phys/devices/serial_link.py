"""What a serial link reports: its errors and its counters (:mod:`phys.devices.serial`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from phys.device import DeviceUnavailable

__all__ = ["DeviceRestarted", "LinkStats", "SerialDeviceError", "SerialTimeout"]


class SerialDeviceError(DeviceUnavailable):
    """A request to a serial device failed; the message names port, message type and seq."""


class SerialTimeout(SerialDeviceError, TimeoutError):
    """No valid answer after every retry."""


class DeviceRestarted(SerialDeviceError):
    """The device answered ERROR 8 "restarted": it lost its settings since the last HELLO
    (handled inside the driver: callers see :class:`SerialDeviceError` if it persists)."""


@dataclass
class LinkStats:
    """What the link did: frames and bytes each way, resends and what was dropped.

    ``timeouts`` counts attempts that ended without an answer, ``resends`` every frame
    sent again with the same ``seq``, ``bad_frames`` answers dropped for COBS, CRC,
    version or length, ``stale`` valid answers dropped because their ``seq`` was not the
    one waited for, ``busy`` ERROR 5 answers, ``device_errors`` ERROR 1 (our frame arrived
    damaged), ``reboots`` times the device was found to have restarted on its own,
    ``reopens`` times the port was opened again after the link was lost
    (:meth:`SerialDevice.reopen`).
    """

    requests: int = 0
    resends: int = 0
    timeouts: int = 0
    bad_frames: int = 0
    stale: int = 0
    busy: int = 0
    device_errors: int = 0
    reboots: int = 0
    reopens: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
