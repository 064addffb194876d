"""Helpers for the serial tests: a scripted device on a real pty (byte-exact exchanges,
in the manner of PyMeasure's ``expected_protocol``) and hand-built frames."""

from __future__ import annotations

import contextlib
import os
import select
import struct
import threading
import time
import tty
import zlib
from collections.abc import Iterator, Sequence

from cobs import cobs

from phys.devices.serial import SerialDevice


def frame(msg_type: int, seq: int, payload: bytes = b"", version: int = 1) -> bytes:
    """A frame built from the protocol page alone (struct, zlib, cobs)."""
    head = struct.pack("<BBHH", version, msg_type, seq, len(payload)) + payload
    return cobs.encode(head + struct.pack("<I", zlib.crc32(head))) + b"\x00"


def info(**overrides: object) -> bytes:
    import json

    d = {"protocol": 1, "name": "rig", "firmware": "t1", "n_in": 2, "n_out": 3,
         "in_min": -1.0, "in_max": 1.0, "dtype": "f32", "max_batch": 8, "max_frame": 256,
         "stochastic": False}
    d.update(overrides)
    return json.dumps({k: v for k, v in d.items() if v is not None}).encode()


class ScriptedPeer:
    """A device on the master side of a pty that expects exactly ``script``.

    ``script`` is a list of ``(expected bytes from the host, bytes to answer)``; an answer
    of ``None`` means staying silent. Any difference, and any byte the host sends after
    the script ends, is recorded in :attr:`errors`.
    """

    def __init__(self, script: Sequence[tuple[bytes, bytes | None]]) -> None:
        self.script = list(script)
        self.errors: list[str] = []
        self.received = bytearray()
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self, n: int, deadline: float) -> bytes:
        data = bytearray()
        while len(data) < n and time.monotonic() < deadline and not self._stop.is_set():
            if select.select([self.master], [], [], 0.02)[0]:
                data += os.read(self.master, n - len(data))
        return bytes(data)

    def _run(self) -> None:
        for step, (expected, answer) in enumerate(self.script):
            got = self._read(len(expected), time.monotonic() + 10)
            self.received += got
            if got != expected:
                self.errors.append(f"step {step}: expected {expected.hex(' ')}, got "
                                   f"{got.hex(' ')}")
                return
            if answer:
                os.write(self.master, answer)
        extra = self._read(1 << 16, time.monotonic() + 0.1)
        if extra:
            self.errors.append(f"host sent {extra.hex(' ')} after the script")
        self.done = True

    def finish(self) -> None:
        self._thread.join(timeout=15)
        self._stop.set()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def expected_protocol(script: Sequence[tuple[bytes, bytes | None]],
                      **options: object) -> Iterator[SerialDevice]:
    """Open a :class:`SerialDevice` (first request ``seq`` 1) against a scripted peer and
    check, on leaving, that the exchange went exactly as scripted."""
    peer = ScriptedPeer(script)
    try:
        device = SerialDevice(peer.port, first_seq=0, **options)
        with device:
            yield device
    finally:
        peer.finish()
    assert not peer.errors, peer.errors
    assert getattr(peer, "done", False), "the script was not played to the end"


def hello(seq: int = 1, **overrides: object) -> tuple[bytes, bytes]:
    """The opening exchange: a lone delimiter and HELLO, answered with INFO."""
    return b"\x00" + frame(0x01, seq), frame(0x81, seq, info(**overrides))
