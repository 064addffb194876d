"""A SCPI instrument model backed by a phys simulator: the command set of
:mod:`phys.devices.scpi_responder`, without any port.

One :class:`ScpiBench` is the circuit (a simulator) with a generator that sets its
inputs and a scope that measures its outputs; every port of the responder answers the
whole command set with its own ``*IDN?`` and its own error queue:

=======================  ============================================================
``*IDN?``                ``PHYS,SCPI-<ROLE>,<serial>,1.0``
``*RST`` / ``*CLS``      inputs to 0, results dropped / error queue emptied
``*OPC?``                ``1``
``SOUR<i>:VOLT <v>``     set input ``i`` (from 1); ``SOUR<i>:VOLT?`` reads it back
``SOUR:LIST <v>,...``    upload rows of inputs (a multiple of ``n_in`` values)
``SOUR:DATA <block>``    the same as an IEEE 488.2 block of float32 (little-endian)
``INIT``                 measure the uploaded rows (or the inputs set one by one)
``FETC?``                the last measurement, ``rows * n_out`` values, ASCII list
``FETC:DATA?``           the same as an IEEE 488.2 binary block of float32
``SYST:ERR?``            the oldest queued error, ``0,"No error"`` when none
=======================  ============================================================

Errors go to the port's queue as SCPI numbers them: -113 undefined header, -104 data
type, -109 missing parameter, -222 data out of range, -230 data stale.

Examples::

    >>> import phys
    >>> bench = ScpiBench(phys.open("cavity", n_in=2, n_out=3, seed=0))
    >>> port = bench.port("gen")
    >>> port.handle(b"*IDN?")
    b'PHYS,SCPI-GEN,0,1.0'
    >>> port.handle(b"SOUR1:VOLT 0.5"), port.handle(b"SOUR1:VOLT?")
    (None, b'0.5')
    >>> port.handle(b"SOUR7:VOLT 0.5"), port.handle(b"SYST:ERR?")
    (None, b'-222,"Data out of range; input 7 of 2"')
"""

from __future__ import annotations

import re
import struct
from collections import deque
from collections.abc import Callable

import torch

from phys.device import Device

__all__ = ["ScpiBench", "ScpiPort", "block", "parse_block"]

#: Largest error queue a port keeps (SCPI drops the newest and says so: -350).
QUEUE_LENGTH = 16
_CHANNEL = re.compile(rb"^SOUR(\d+):VOLT(\?)?$")


class ScpiCommandError(ValueError):
    """A command the port refuses: ``code`` and text go to its error queue."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


def block(payload: bytes) -> bytes:
    """``payload`` as an IEEE 488.2 definite-length block: ``#<n><length><payload>``.

    Examples::

        >>> block(b"abc")
        b'#13abc'
    """
    length = str(len(payload)).encode()
    return b"#" + str(len(length)).encode() + length + payload


def parse_block(data: bytes) -> tuple[bytes, int] | None:
    """The payload of the block at the start of ``data`` and the bytes it took, or
    ``None`` while the block is incomplete.

    Raises:
        ScpiCommandError: not a definite-length block (-104).
    """
    if len(data) < 2:
        return None
    if data[:1] != b"#" or not data[1:2].isdigit() or data[1:2] == b"0":
        raise ScpiCommandError(-104, "Data type error; expected a #<n><length> block")
    digits = int(data[1:2])
    if len(data) < 2 + digits:
        return None
    size_text = data[2:2 + digits]
    if not size_text.isdigit():
        raise ScpiCommandError(-104, "Data type error; bad block length")
    end = 2 + digits + int(size_text)
    if len(data) < end:
        return None
    return data[2 + digits:end], end


def _numbers(text: bytes) -> list[float]:
    try:
        return [float(v) for v in text.split(b",")]
    except ValueError:
        raise ScpiCommandError(-104, f"Data type error; {text[:40].decode(errors='replace')!r}"
                               ) from None


def _fmt(values: list[float]) -> bytes:
    return ",".join(f"{v:.9g}" for v in values).encode()


class ScpiBench:
    """The shared circuit: a simulator, its inputs, the uploaded rows and the last
    measurement.

    Args:
        device: The simulator (or any :class:`~phys.Device`) that the scope measures.
    """

    def __init__(self, device: Device) -> None:
        self.device = device
        self.n_in, self.n_out = device.info.n_in, device.info.n_out
        self.lo, self.hi = device.info.in_min, device.info.in_max
        self.reset()

    def reset(self) -> None:
        self.inputs = [0.0] * self.n_in
        self.rows: list[list[float]] | None = None  # None: the inputs set one by one
        self.result: list[float] | None = None
        self.measurements = 0

    def port(self, role: str, serial: int = 0) -> ScpiPort:
        """A new port of this bench, answering ``*IDN?`` as ``role``."""
        return ScpiPort(self, role, serial)

    def check_range(self, values: list[float]) -> None:
        for v in values:
            if not self.lo <= v <= self.hi:
                raise ScpiCommandError(-222, f"Data out of range; {v:g} outside "
                                       f"[{self.lo:g}, {self.hi:g}]")

    def upload(self, values: list[float]) -> None:
        if not values or len(values) % self.n_in:
            raise ScpiCommandError(-109, f"Missing parameter; {len(values)} values is not "
                                   f"a multiple of {self.n_in} inputs")
        self.check_range(values)
        self.rows = [values[k:k + self.n_in] for k in range(0, len(values), self.n_in)]

    def measure(self) -> None:
        rows = self.rows if self.rows is not None else [self.inputs]
        out = self.device.query(torch.tensor(rows, dtype=torch.float32))
        self.result = [float(v) for v in out.reshape(-1)]
        self.measurements += 1


class ScpiPort:
    """One port of a :class:`ScpiBench`: parses a command line and answers it.

    Args:
        bench: The shared circuit.
        role: Named in ``*IDN?`` (``gen``, ``scope``).
        serial: The serial number in ``*IDN?``.
    """

    def __init__(self, bench: ScpiBench, role: str, serial: int = 0) -> None:
        self.bench, self.role, self.serial = bench, role, serial
        self.errors: deque[str] = deque()
        self._table: dict[bytes, Callable[[bytes], bytes | None]] = {
            b"*IDN?": self._idn, b"*RST": self._rst, b"*CLS": self._cls,
            b"*OPC?": lambda arg: b"1", b"SOUR:LIST": self._list, b"SOUR:DATA": self._data,
            b"INIT": self._init, b"FETC?": self._fetch, b"FETC:DATA?": self._fetch_block,
            b"SYST:ERR?": self._error,
        }

    def push_error(self, code: int, text: str) -> None:
        """Queue an error (the queue keeps :data:`QUEUE_LENGTH`; -350 marks overflow)."""
        if len(self.errors) >= QUEUE_LENGTH:
            self.errors[-1] = '-350,"Queue overflow"'
            return
        self.errors.append(f'{code},"{text}"')

    def handle(self, line: bytes) -> bytes | None:
        """The reply to one command (``None`` for a command that answers nothing);
        several commands joined by ``;`` answer with their replies joined by ``;``."""
        replies = []
        for command in _split(line):
            try:
                reply = self._one(command.strip())
            except ScpiCommandError as err:
                self.push_error(err.code, str(err))
                continue
            if reply is not None:
                replies.append(reply)
        return b";".join(replies) if replies else None

    def _one(self, command: bytes) -> bytes | None:
        header, _, arg = command.partition(b" ")
        header = header.upper()
        handler = self._table.get(header)
        if handler is not None:
            return handler(arg.strip())
        channel = _CHANNEL.match(header)
        if channel is not None:
            return self._channel(int(channel.group(1)), channel.group(2) is not None, arg)
        raise ScpiCommandError(-113, f"Undefined header; {header.decode(errors='replace')}")

    def _idn(self, arg: bytes) -> bytes:
        return f"PHYS,SCPI-{self.role.upper()},{self.serial},1.0".encode()

    def _rst(self, arg: bytes) -> None:
        self.bench.reset()

    def _cls(self, arg: bytes) -> None:
        self.errors.clear()

    def _channel(self, i: int, query: bool, arg: bytes) -> bytes | None:
        bench = self.bench
        if not 1 <= i <= bench.n_in:
            raise ScpiCommandError(-222, f"Data out of range; input {i} of {bench.n_in}")
        if query:
            return _fmt([bench.inputs[i - 1]])
        values = _numbers(arg.strip())
        if len(values) != 1:
            raise ScpiCommandError(-109, "Missing parameter; one value per channel")
        bench.check_range(values)
        bench.inputs[i - 1] = values[0]
        bench.rows = None
        return None

    def _list(self, arg: bytes) -> None:
        self.bench.upload(_numbers(arg))

    def _data(self, arg: bytes) -> None:
        parsed = parse_block(arg)
        if parsed is None or parsed[1] != len(arg) or len(parsed[0]) % 4:
            raise ScpiCommandError(-104, "Data type error; bad float32 block")
        payload = parsed[0]
        self.bench.upload(list(struct.unpack(f"<{len(payload) // 4}f", payload)))

    def _init(self, arg: bytes) -> None:
        self.bench.measure()

    def _result(self) -> list[float]:
        if self.bench.result is None:
            raise ScpiCommandError(-230, "Data corrupt or stale; INIT first")
        return self.bench.result

    def _fetch(self, arg: bytes) -> bytes:
        return _fmt(self._result())

    def _fetch_block(self, arg: bytes) -> bytes:
        values = self._result()
        return block(struct.pack(f"<{len(values)}f", *values))

    def _error(self, arg: bytes) -> bytes:
        return (self.errors.popleft() if self.errors else '0,"No error"').encode()


def _split(line: bytes) -> list[bytes]:
    """Commands of one line split at ``;`` outside a binary block."""
    if b"#" not in line:
        return [c for c in line.split(b";") if c.strip()]
    head, _, rest = line.partition(b"#")
    return [c for c in head.split(b";")[:-1] if c.strip()] + [head.split(b";")[-1] + b"#" + rest]
