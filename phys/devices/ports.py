"""Opening lab devices by address: a port path or URL, the first port that answers, a
scan of the USB serial ports, and a simulator standing in when nothing answers."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from phys.device import Device
from phys.devices.serial import SerialDevice, SerialDeviceError

__all__ = ["FallbackWarning", "open_address", "open_auto", "scan"]


class FallbackWarning(RuntimeWarning):
    """No device answered at an address, so a simulator stands in for it."""


def _fallback(spec: str, fallback: str | None, reason: BaseException,
              hints: Mapping[str, Any], fallback_options: Mapping[str, Any] | None) -> Device:
    """The simulator ``fallback`` with the size and seed ``hints`` it takes, and a warning;
    without a fallback, ``reason`` is raised."""
    if fallback is None:
        raise reason
    from phys import registry

    taken = {k: v for k, v in hints.items() if v is not None}
    device = registry.DeviceSpec.parse(fallback, fallback_options).open(**taken)
    text = str(reason)
    where = "" if text.startswith(spec) else f"{spec}: "
    warnings.warn(f"{where}{text}; using the {fallback!r} simulator instead",
                  FallbackWarning, stacklevel=4)  # points at the phys.open call
    return device


def open_address(spec: str, *, fallback: str | None = None,
                 fallback_options: Mapping[str, Any] | None = None, n_in: int | None = None,
                 n_out: int | None = None, seed: int | None = None,
                 **options: Any) -> Device:
    """Open the device at a port path or URL (what ``phys.open`` calls for addresses).

    A lab device's sizes are fixed by its firmware: ``n_in``, ``n_out`` and ``seed`` only
    shape the fallback simulator (a :class:`~phys.PhysicalLayer` adapts to the device's
    own sizes).

    Args:
        spec: ``serial:///dev/ttyACM0``, ``/dev/ttyUSB0``, ``COM3``, ``socket://host:port``.
        fallback: A registered simulator to return, with a :class:`FallbackWarning`, when
            the port cannot be opened or does not answer HELLO.
        fallback_options: More options for the fallback simulator.
        n_in, n_out, seed: Given to the fallback when it takes them.
        **options: :class:`SerialDevice` options (``baudrate``, ``retries``, …).

    Examples::

        >>> import warnings, phys
        >>> with warnings.catch_warnings(record=True):
        ...     dev = phys.open("serial:///dev/no-such-port", fallback="cavity", n_in=4)
        >>> dev.info.name, dev.info.n_in
        ('cavity', 4)
    """
    hints = {"n_in": n_in, "n_out": n_out, "seed": seed}
    try:
        return SerialDevice(spec, **options)
    except SerialDeviceError as err:
        return _fallback(spec, fallback, err, hints, fallback_options)


def _candidates(ports: Iterable[str] | None) -> list[str]:
    if ports is not None:
        return list(ports)
    from serial.tools import list_ports

    # USB devices only: probing every legacy UART is slow and talks to unknown hardware
    return [p.device for p in sorted(list_ports.comports(), key=lambda p: p.device)
            if p.vid is not None]


def scan(ports: Iterable[str] | None = None, **options: Any) -> list[tuple[str, Any]]:
    """Send HELLO to each port; ``[(port, DeviceInfo or error text), ...]``.

    Args:
        ports: Ports to probe; by default the USB serial ports ``serial.tools.list_ports``
            finds.
        **options: :class:`SerialDevice` options (by default one retry).
    """
    found: list[tuple[str, Any]] = []
    for port in _candidates(ports):
        try:
            with SerialDevice(port, **{"retries": 1, **options}) as dev:
                found.append((port, dev.info))
        except SerialDeviceError as err:
            found.append((port, str(err)))
    return found


def open_auto(spec: str = "auto", *, ports: Iterable[str] | None = None,
              fallback: str | None = "cavity",
              fallback_options: Mapping[str, Any] | None = None, n_in: int | None = None,
              n_out: int | None = None, seed: int | None = None, **options: Any) -> Device:
    """The first port that answers HELLO (``phys.open("auto")``); otherwise ``fallback``.

    Args:
        ports: Ports to probe in order; by default the USB serial ports found by
            ``serial.tools.list_ports``.
        fallback: Simulator used when no port answers (``None``: raise instead).
        fallback_options, n_in, n_out, seed: As for :func:`open_address`.
        **options: :class:`SerialDevice` options (by default one retry per port).
    """
    errors = []
    for port in _candidates(ports):
        try:
            return SerialDevice(port, **{"retries": 1, **options})
        except SerialDeviceError as err:
            errors.append(str(err))
    reason = SerialDeviceError("no serial device answered HELLO" + (
        f" ({'; '.join(errors)})" if errors else " (no USB serial ports found)"))
    return _fallback(spec, fallback, reason, {"n_in": n_in, "n_out": n_out, "seed": seed},
                     fallback_options)
