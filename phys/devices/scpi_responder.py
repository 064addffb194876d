"""A SCPI responder on real pseudo-terminals: try a ``visa:`` rig without hardware.

Each port (a generator, a scope, ...) is a pty that PyVISA opens through pyvisa-py as
``ASRL/dev/pts/N::INSTR``; behind them one :class:`~phys.devices.scpi_instrument.ScpiBench`
measures a phys simulator (the command set is in that module). Replies are paced at the
line's ``baudrate`` (10 bits per byte each way), and faults are drawn per reply: a
timeout (no reply at all), a garbled reply, or an instrument error queued by ``INIT``.

Run it from a shell (it prints each port's VISA resource and serves until Ctrl-C)::

    python -m phys.devices.scpi_responder --device cavity -o n_in=4 -o n_out=3

Examples::

    >>> import phys, pyvisa
    >>> with ScpiResponder(phys.open("cavity", n_in=2, n_out=2), roles=("gen",)) as lab:
    ...     rm = pyvisa.ResourceManager("@py")
    ...     gen = rm.open_resource(lab.resource("gen"), read_termination="\\n",
    ...                            write_termination="\\n", timeout=2000)
    ...     print(gen.query("*IDN?"))
    ...     gen.close()
    PHYS,SCPI-GEN,0,1.0
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import select
import threading
import time
import tty
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from phys.device import Device
from phys.devices.scpi_instrument import ScpiBench, ScpiCommandError, ScpiPort, parse_block

__all__ = ["FAULT_KINDS", "ScpiFaults", "ScpiResponder", "main"]

#: The faults a responder can inject.
FAULT_KINDS = ("timeout", "garble", "error", "late")
#: What a garbled reply looks like on the wire (before the terminator).
GARBLED = b"\x8f#?\xa5~GARBLE"
#: Most lines kept per port in :meth:`ScpiResponder.received`.
TRANSCRIPT_LENGTH = 100_000
_READ = 65536


@dataclass
class ScpiFaults:
    """Chances, per reply (``timeout``, ``garble``, ``late``) or per ``INIT`` (``error``),
    of a fault.

    Args:
        timeout: The reply is not sent (the host times out).
        garble: The reply is replaced by :data:`GARBLED`.
        error: ``INIT`` measures but queues ``-240,"Hardware error"``.
        late: The reply is sent ``late_seconds`` late (after the host gave up on it).
        seed: Seeds the draws.
        late_seconds: How late a late reply is, in seconds.
    """

    timeout: float = 0.0
    garble: float = 0.0
    error: float = 0.0
    late: float = 0.0
    seed: int = 0
    late_seconds: float = 0.5

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            rate = getattr(self, kind)
            if not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {kind} must be in [0, 1], got {rate!r}")
        if not isinstance(self.late_seconds, (int, float)) or not 0 <= self.late_seconds <= 60:
            raise ValueError(f"late_seconds must be in [0, 60], got {self.late_seconds!r}")


@dataclass
class _Link:
    role: str
    master: int
    slave: int
    port: ScpiPort
    buffer: bytes = b""
    received: deque[bytes] = field(default_factory=lambda: deque(maxlen=TRANSCRIPT_LENGTH))


def take_line(buffer: bytes, termination: bytes = b"\n") -> tuple[bytes, bytes] | None:
    """``(line, rest)``: the first command line of ``buffer`` (a binary block in it may
    hold the terminator), or ``None`` while it is incomplete."""
    end = buffer.find(termination)
    mark = buffer.find(b"#")
    if 0 <= mark < (end if end >= 0 else len(buffer)):
        try:
            parsed = parse_block(buffer[mark:])
        except ScpiCommandError:
            parsed = (b"", 0)  # not a block: the terminator ends the line
        if parsed is None:
            return None
        if parsed[1]:
            end = buffer.find(termination, mark + parsed[1])
    if end < 0:
        return None
    return buffer[:end], buffer[end + len(termination):]


class ScpiResponder:
    """SCPI ports on pseudo-terminals, served by a background thread.

    Args:
        device: The simulator behind the ports.
        roles: One port per role, each with its own ``*IDN?`` and error queue.
        baudrate: Line rate the replies are paced at, in bit/s (``0``: as fast as the
            pty goes).
        faults: What goes wrong, and how often.
    """

    def __init__(self, device: Device, *, roles: Sequence[str] = ("gen", "scope"),
                 baudrate: int = 115200, faults: ScpiFaults | None = None) -> None:
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate < 0:
            raise ValueError(f"baudrate must be an int >= 0 (bit/s), got {baudrate!r}")
        if not roles or len(set(roles)) != len(roles):
            raise ValueError(f"roles must be distinct names, got {list(roles)!r}")
        self.bench = ScpiBench(device)
        self.baudrate, self.faults = baudrate, faults or ScpiFaults()
        self._rng = random.Random(self.faults.seed)
        self._forced: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self.stats: dict[str, int] = {"lines": 0, "replies": 0, **dict.fromkeys(FAULT_KINDS, 0)}
        self._links: dict[str, _Link] = {}
        for serial, role in enumerate(roles):
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo before the host configures the port
            os.set_blocking(master, False)
            self._links[role] = _Link(role, master, slave, self.bench.port(role, serial))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- for hosts and tests ----------------------------------------------------------
    def path(self, role: str) -> str:
        """The pty path of a port (``/dev/pts/N``)."""
        return os.ttyname(self._link(role).slave)

    def resource(self, role: str) -> str:
        """The VISA resource of a port (``ASRL/dev/pts/N::INSTR``)."""
        return f"ASRL{self.path(role)}::INSTR"

    def resources(self) -> dict[str, str]:
        """Every port's VISA resource by role."""
        return {role: self.resource(role) for role in self._links}

    def received(self, role: str) -> list[bytes]:
        """Every line the port received, with its terminator, oldest first."""
        with self._lock:
            return list(self._link(role).received)

    def clear_received(self) -> None:
        with self._lock:
            for link in self._links.values():
                link.received.clear()

    def inject(self, kind: str, count: int = 1) -> None:
        """Make the next ``count`` chances of fault ``kind`` happen."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}, got {kind!r}")
        with self._lock:
            self._forced[kind] += count

    def _link(self, role: str) -> _Link:
        if role not in self._links:
            raise ValueError(f"no port {role!r}; the responder has {', '.join(self._links)}")
        return self._links[role]

    # -- running ----------------------------------------------------------------------
    def start(self) -> ScpiResponder:
        self._thread = threading.Thread(target=self.serve_forever, name="scpi-responder",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for link in self._links.values():
            for fd in (link.master, link.slave):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __enter__(self) -> ScpiResponder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self, seconds: float | None = None) -> None:
        """Answer commands until :meth:`stop` (or for ``seconds``)."""
        end = None if seconds is None else time.monotonic() + seconds
        by_fd = {link.master: link for link in self._links.values()}
        while not self._stop.is_set() and (end is None or time.monotonic() < end):
            ready, _, _ = select.select(list(by_fd), [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, _READ)
                except OSError:
                    continue
                self._feed(by_fd[fd], data)

    def _feed(self, link: _Link, data: bytes) -> None:
        link.buffer += data
        while True:
            taken = take_line(link.buffer)
            if taken is None:
                return
            line, link.buffer = taken
            with self._lock:
                link.received.append(line + b"\n")
                self.stats["lines"] += 1
            self._pace(len(line) + 1)
            self._answer(link, line)

    def _answer(self, link: _Link, line: bytes) -> None:
        reply = link.port.handle(line)
        if line.strip().upper().startswith(b"INIT") and self._draw("error"):
            link.port.push_error(-240, "Hardware error; injected fault")
        if reply is None:
            return
        if not line.strip().upper().startswith(b"*IDN?"):
            if self._draw("timeout"):
                return
            if self._draw("garble"):
                reply = GARBLED
            if self._draw("late"):
                time.sleep(self.faults.late_seconds)
        self._pace(len(reply) + 1)
        self._write(link.master, reply + b"\n")
        self.stats["replies"] += 1

    def _draw(self, kind: str) -> bool:
        with self._lock:
            hit = self._forced[kind] > 0
            if hit:
                self._forced[kind] -= 1
            hit = hit or self._rng.random() < getattr(self.faults, kind)
            self.stats[kind] += hit
        return hit

    def _pace(self, n_bytes: int) -> None:
        if self.baudrate:
            time.sleep(n_bytes * 10 / self.baudrate)

    def _write(self, fd: int, data: bytes) -> None:
        deadline = time.monotonic() + 2.0  # a host that stopped reading: drop the rest
        while data and time.monotonic() < deadline:
            _, ready, _ = select.select([], [fd], [], 0.1)
            if ready:
                try:
                    data = data[os.write(fd, data):]
                except (BlockingIOError, OSError):
                    time.sleep(0.001)


def _parse_kv(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m phys.devices.scpi_responder",
                                description="SCPI ports on pseudo-terminals, backed by a "
                                            "phys simulator.")
    p.add_argument("--device", default="cavity", help="simulator behind the ports")
    p.add_argument("-o", dest="options", type=_parse_kv, action="append", default=[],
                   metavar="KEY=VALUE", help="simulator option, e.g. -o n_in=4")
    p.add_argument("--roles", default="gen,scope", help="ports, comma-separated")
    p.add_argument("--baudrate", type=int, default=115200, help="line rate, bit/s")
    for kind in FAULT_KINDS:
        p.add_argument(f"--{kind}", type=float, default=0.0, help=f"chance of a {kind} fault")
    p.add_argument("--seed", type=int, default=0, help="seeds the faults")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Serve SCPI ports until interrupted; prints ``ROLE: RESOURCE`` for each port."""
    from phys import registry

    args = _parser().parse_args(argv)
    device = registry.open(args.device, **dict(args.options))
    faults = ScpiFaults(**{k: getattr(args, k) for k in FAULT_KINDS}, seed=args.seed)
    responder = ScpiResponder(device, roles=args.roles.split(","), baudrate=args.baudrate,
                              faults=faults)
    for role, resource in responder.resources().items():
        print(f"{role}: {resource}", flush=True)
    try:
        responder.serve_forever(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        responder.stop()
        device.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
