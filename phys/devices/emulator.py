"""Virtual lab device: the wire protocol served on a pseudo-terminal or a TCP port.

An :class:`Emulator` stands in for a microcontroller rig. It serves
:class:`~phys.devices.responder.Responder` (protocol logic around any simulator
:class:`~phys.Device`) on a real pseudo-terminal (``os.openpty``) or a TCP socket, so the
host driver talks to it exactly as to hardware: ``phys.open(emulator.port)``.

Timing is a ``simpy`` model of the rig: a frame takes ``10 / baudrate`` seconds per byte
on each line (host to device and back, one ``Resource`` each), waits in the device's
input queue (a ``Store`` of ``queue`` frames; a frame that finds it full is answered
ERROR 5, busy), then the firmware spends ``turnaround`` seconds on it and, for a QUERY of
``B`` rows, ``B * (settle + conversion)`` seconds on the measuring unit (a ``Resource``).
With ``realtime=True`` the model runs on ``simpy.rt.RealtimeEnvironment``, answers leave
when a real rig would send them, and throughput over the pty is what the line allows;
otherwise it runs on virtual time, answers leave at once and :attr:`EmulatorStats.lab_seconds`
says how long the rig would have taken.

Faults (:class:`Faults`) strike frames on the link in either direction - dropped,
corrupted (bits flipped), duplicated, delayed by ``delay_seconds`` of wall time - and the
device itself: ``reset`` (a power glitch: the request in hand is lost and the device
returns to its power-up state) and ``unplug`` (the port closes for good).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import inspect
import math
import os
import random
import select
import socket
import threading
import time
import tty
from collections.abc import Iterator
from typing import Any

import simpy
import simpy.rt

from phys.device import Device
from phys.devices import protocol as P
from phys.devices.faults import EmulatorStats, Faults, corrupt, seq_of
from phys.devices.responder import Responder

__all__ = ["Emulator", "EmulatorStats", "Faults", "serve"]

#: Output held for a host that does not read, before further answers are thrown away.
MAX_PENDING_OUTPUT = 4 << 20


class _Link:
    """One host connection: a pty master or a TCP socket, its frame splitter and the
    bytes waiting to be written to it."""

    def __init__(self, fd: Any, frame_limit: int) -> None:
        self.fd = fd
        self.splitter = P.FrameSplitter(frame_limit)
        self.out = bytearray()
        self.closed = False

    def recv(self) -> bytes:
        try:
            if isinstance(self.fd, socket.socket):
                data = self.fd.recv(1 << 16)
                if not data:
                    self.close()
                return data
            return os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return b""
        except OSError as err:
            if isinstance(self.fd, socket.socket):
                self.close()
            elif err.errno == errno.EIO:  # no host holds the pty open
                time.sleep(0.01)
            else:
                raise
            return b""

    def send(self) -> int:
        try:
            if isinstance(self.fd, socket.socket):
                n = self.fd.send(self.out)
            else:
                n = os.write(self.fd, self.out)
        except BlockingIOError:
            return 0
        except OSError:
            self.out.clear()
            return 0
        del self.out[:n]
        return n

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                if isinstance(self.fd, socket.socket):
                    self.fd.close()
                else:
                    os.close(self.fd)


class Emulator:
    """A virtual lab device on a pseudo-terminal or a TCP port.

    Args:
        device: The physics behind the protocol (any :class:`~phys.Device`).
        baudrate: Modelled line rate, bits/s (10 bits per byte).
        settle: Modelled seconds for the actuators (DACs) to settle, per sample.
        conversion: Modelled seconds for the detectors (ADCs) to convert, per sample.
        turnaround: Modelled firmware seconds per request.
        realtime: Pace answers in wall-clock time (``simpy.rt``) instead of virtual time.
        faults: A :class:`Faults` or its text form ``"drop=0.01,..."``.
        queue: Frames the device's input queue holds.
        fault_seed: Seeds the faults and the ``boot`` numbers.
        **responder_options: ``dtype``, ``max_batch``, ``max_frame``, ``out_range``,
            ``name`` of :class:`~phys.devices.responder.Responder`.

    Examples::

        >>> import phys, torch
        >>> with Emulator.serving("cavity", n_in=4, n_out=3) as lab:
        ...     with phys.open(lab.port) as dev:
        ...         y = dev.query(torch.zeros(2, 4))
        ...     lab.stats.frames_in >= 2
        True
    """

    def __init__(self, device: Device, *, baudrate: int = 115200, settle: float = 0.0,
                 conversion: float = 0.0, turnaround: float = 0.0, realtime: bool = False,
                 faults: Faults | str | None = None, queue: int = 4, fault_seed: int = 0,
                 **responder_options: Any) -> None:
        for key, value in (("settle", settle), ("conversion", conversion),
                           ("turnaround", turnaround)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{key} must be a number of seconds >= 0, got {value!r}")
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate < 1:
            raise ValueError(f"baudrate must be a positive int, got {baudrate!r}")
        if isinstance(queue, bool) or not isinstance(queue, int) or queue < 1:
            raise ValueError(f"queue must be a positive int, got {queue!r}")
        if isinstance(faults, str):
            faults = Faults.parse(faults)
        self.faults = faults or Faults()
        self.baudrate, self.realtime = baudrate, bool(realtime)
        self.settle, self.conversion, self.turnaround = settle, conversion, turnaround
        self.responder = Responder(device, sample_time=settle + conversion, seed=fault_seed,
                                   **responder_options)
        self.device = device
        self.stats = EmulatorStats()
        self.port: str | None = None
        self._rng = random.Random(fault_seed + 1)
        self._links: dict[int, _Link] = {}
        self._next_link = 0
        self._wall: list[tuple[float, int, str, int, bytes]] = []  # delayed frames
        self._held: dict[tuple[str, int], float] = {}  # a direction is held until then
        self._tick = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._slave: int | None = None
        self._server: socket.socket | None = None
        self._build_model(queue)

    # -- construction helpers ---------------------------------------------------------
    @classmethod
    @contextlib.contextmanager
    def serving(cls, device: str | Device, *, tcp: int | None = None,
                **options: Any) -> Iterator[Emulator]:
        """Context manager: an emulator running in a background thread on a new pty (or
        on TCP port ``tcp``, 0 for any free one); closes the backend on exit.

        ``device`` is a registry name (its options among ``options``) or a Device.
        """
        own = {p for p in inspect.signature(cls).parameters if p != "device"}
        own |= {"dtype", "max_batch", "max_frame", "out_range", "name"}
        mine = {k: v for k, v in options.items() if k in own}
        if isinstance(device, str):
            from phys import registry

            device = registry.open(device, **{k: v for k, v in options.items() if k not in own})
        emulator = cls(device, **mine)
        try:
            if tcp is None:
                emulator.open_pty()
            else:
                emulator.open_tcp(port=tcp)
            emulator.start()
            yield emulator
        finally:
            emulator.stop()
            device.close()

    def _build_model(self, queue: int) -> None:
        if self.realtime:
            self.env: simpy.Environment = simpy.rt.RealtimeEnvironment(strict=False)
        else:
            self.env = simpy.Environment()
        self._line_in = simpy.Resource(self.env, capacity=1)
        self._line_out = simpy.Resource(self.env, capacity=1)
        self._unit = simpy.Resource(self.env, capacity=1)
        self._rx = simpy.Store(self.env, capacity=queue)
        self.env.process(self._firmware())

    # -- transports -------------------------------------------------------------------
    def open_pty(self) -> str:
        """Serve on a new pseudo-terminal; returns (and sets :attr:`port` to) its path."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing before the host configures the port
        os.set_blocking(master, False)
        self._slave = slave  # held open: the pty lives on while hosts come and go
        self._links[0] = _Link(master, self.responder.frame_limit)
        self.port = os.ttyname(slave)
        return self.port

    def open_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on a TCP port, one link per connected host; returns the ``socket://`` URL."""
        server = socket.create_server((host, port))
        server.setblocking(False)
        self._server = server
        self.port = f"socket://{host}:{server.getsockname()[1]}"
        return self.port

    # -- running ----------------------------------------------------------------------
    def start(self) -> Emulator:
        """Serve in a background thread."""
        if self.port is None:
            self.open_pty()
        self._thread = threading.Thread(target=self.serve_forever, name="phys-emulator",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._close_port()

    def request_stop(self) -> None:
        """Ask a running :meth:`serve_forever` to stop (safe from any thread or a signal
        handler)."""
        self._stop.set()

    def unplug(self) -> None:
        """Close the port as if the cable were pulled; the host's next read fails."""
        self.stats.unplugged = True
        self._stop.set()
        if self._thread is None or self._thread is threading.current_thread():
            self._close_port()
        else:
            self._thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _close_port(self) -> None:
        for link in list(self._links.values()):
            link.close()
        self._links.clear()
        if self._slave is not None:
            with contextlib.suppress(OSError):
                os.close(self._slave)
            self._slave = None
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
            self._server = None

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` (or an unplug fault); the port is closed afterwards."""
        try:
            while not self._stop.is_set():
                self._serve_once()
        finally:
            self._close_port()

    def _serve_once(self) -> None:
        wait = min(0.1, max(0.0, self._next_wakeup() - time.monotonic()))
        links = list(self._links.values())
        readers: list[Any] = [link.fd for link in links]
        if self._server is not None:
            readers.append(self._server)
        writers = [link.fd for link in links if link.out]
        readable, writable, _ = select.select(readers, writers, [], wait)
        if self._server is not None and self._server in readable:
            conn, _ = self._server.accept()
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._next_link += 1
            self._links[self._next_link] = _Link(conn, self.responder.frame_limit)
        for key, link in list(self._links.items()):
            if link.fd not in readable:
                continue
            data = link.recv()
            if link.closed:  # a TCP host hung up
                del self._links[key]
                continue
            now = time.monotonic()
            self.stats.bytes_in += len(data)
            for frame in link.splitter.feed(data):
                self._inbound(key, frame, now)
                if self._stop.is_set():
                    return
        self._advance(time.monotonic())
        for link in list(self._links.values()):
            if link.out:
                self.stats.bytes_out += link.send()

    # -- wall clock: delayed frames and the model's next event ------------------------
    def _next_wakeup(self) -> float:
        t = math.inf
        if self._wall:
            t = self._wall[0][0]
        if self.realtime:
            peek = self.env.peek()
            if peek != math.inf:
                env = self.env
                t = min(t, env.real_start + (peek - env.env_start) * env.factor)
        return t

    def _model_time(self, now: float) -> float:
        env = self.env
        if not self.realtime:
            return env.now
        return max(env.now, env.env_start + (now - env.real_start) / env.factor)

    def _release(self, now: float) -> None:
        """Let held frames whose time has come go on, in the order they were held."""
        while self._wall and self._wall[0][0] <= now:
            _, _, direction, link, frame = heapq.heappop(self._wall)
            if direction == "in":
                self._submit(link, frame, now)
            else:
                self._write_frame(link, frame)

    def _advance(self, now: float) -> None:
        self._release(now)
        env = self.env
        if self.realtime:
            until = self._model_time(now)
            while env.peek() <= until:
                env.step()
        else:
            env.run()
        self.stats.lab_seconds = env.now

    def _pass(self, now: float, direction: str, link: int, frame: bytes, late: bool) -> bool:
        """Hold ``frame`` when it is delayed, or when an earlier delayed frame is still held
        in the same direction (a serial line never reorders); ``False`` if it passes now."""
        self._release(now)  # frames held until now go first
        key = (direction, link)
        held = self._held.get(key, 0.0)
        if not late and held <= now:
            return False
        release = max(held, now + self.faults.delay_seconds if late else now)
        self._held[key] = release
        self._tick += 1
        heapq.heappush(self._wall, (release, self._tick, direction, link, frame))
        return True

    def _hit(self, kind: str) -> bool:
        p = getattr(self.faults, kind)
        if p > 0 and self._rng.random() < p:
            self.stats.faults[kind] = self.stats.faults.get(kind, 0) + 1
            return True
        return False

    # -- the link -----------------------------------------------------------------------
    def _inbound(self, link: int, frame: bytes, now: float) -> None:
        """A frame from the host: link faults, then the device model."""
        self.stats.frames_in += 1
        if self._hit("unplug"):
            self.unplug()
            return
        if self._hit("drop"):
            return
        if self._hit("corrupt"):
            frame = corrupt(frame, self._rng)
        copies = 2 if self._hit("duplicate") else 1
        late = self._hit("delay")
        for _ in range(copies):
            if not self._pass(now, "in", link, frame, late):
                self._submit(link, frame, now)

    def _outbound(self, link: int, frame: bytes) -> None:
        """A frame the device finished sending (with its 0x00): link faults, then the port."""
        if self._hit("drop"):
            return
        if self._hit("corrupt"):
            frame = corrupt(frame[:-1], self._rng) + b"\x00"
        copies = 2 if self._hit("duplicate") else 1
        late = self._hit("delay")
        now = time.monotonic()
        for _ in range(copies):
            if not self._pass(now, "out", link, frame, late):
                self._write_frame(link, frame)

    def _write_frame(self, key: int, frame: bytes) -> None:
        link = self._links.get(key)
        if link is None:  # that host has gone
            return
        if len(link.out) + len(frame) > MAX_PENDING_OUTPUT:
            self.stats.overflow_bytes += len(frame)
            return
        self.stats.frames_out += 1
        link.out += frame

    # -- the simpy model ----------------------------------------------------------------
    def _line_time(self, n_bytes: int) -> float:
        return n_bytes * 10 / self.baudrate

    def _submit(self, link: int, frame: bytes, now: float) -> None:
        self.env.process(self._arrive(link, frame, self._model_time(now)))

    def _arrive(self, link: int, frame: bytes, at: float) -> Iterator[Any]:
        env = self.env
        if at > env.now:
            yield env.timeout(at - env.now)
        with self._line_in.request() as turn:
            yield turn
            yield env.timeout(self._line_time(len(frame) + 1))
        if len(self._rx.items) >= self._rx.capacity:
            seq = seq_of(frame)
            self.stats.busy += 1
            if seq is not None:
                busy = P.encode_frame(P.ERROR, seq, P.error_payload(P.BUSY, "input queue full"))
                env.process(self._transmit(link, busy))
            return
        yield self._rx.put((link, frame))

    def _firmware(self) -> Iterator[Any]:
        env = self.env
        while True:
            link, frame = yield self._rx.get()
            if self._hit("reset"):
                self.responder.power_up()
                self._rx.items.clear()
                self.stats.resets += 1
                continue
            if self.turnaround:
                yield env.timeout(self.turnaround)
            answers, rows = self.responder.handle(frame)
            if rows:
                with self._unit.request() as turn:
                    yield turn
                    busy = rows * (self.settle + self.conversion)
                    self.stats.measuring_seconds += busy
                    yield env.timeout(busy)
            for answer in answers:
                env.process(self._transmit(link, answer))

    def _transmit(self, link: int, frame: bytes) -> Iterator[Any]:
        with self._line_out.request() as turn:
            yield turn
            yield self.env.timeout(self._line_time(len(frame)))
        self._outbound(link, frame)


def serve(device: str, device_options: dict[str, Any], *, tcp: int | None = None,
          port_file: str | None = None, duration: float | None = None,
          threads: int | None = None, **options: Any) -> EmulatorStats:
    """What ``phys emulate`` runs: open simulator ``device``, serve it on a new pty (or TCP
    port ``tcp``), print the port and write it to ``port_file``; serve until Ctrl-C,
    SIGTERM, an unplug fault or ``duration`` seconds; ``threads`` sets torch's thread
    count for the simulator (a stand-in should not crowd the host). Returns the final
    stats."""
    import signal

    from phys import registry
    from phys.atomic import write_text

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    backend = registry.open(device, **device_options)
    try:
        emulator = Emulator(backend, **options)
        port = emulator.open_pty() if tcp is None else emulator.open_tcp(port=tcp)
        r = emulator.responder
        clock = "real time" if emulator.realtime else "virtual time"
        print(f"serving {r.name} (n_in={r.n_in}, n_out={r.n_out}, {r.dtype}, max_batch="
              f"{r.max_batch}) at {emulator.baudrate} baud, {clock}, on", flush=True)
        print(port, flush=True)
        if port_file:
            write_text(port_file, port + "\n")
        timer = threading.Timer(duration, emulator.request_stop) if duration else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        previous = signal.signal(signal.SIGTERM, lambda *_: emulator.request_stop()) \
            if threading.current_thread() is threading.main_thread() else None
        try:
            emulator.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            if timer is not None:
                timer.cancel()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        s, rs = emulator.stats, r.stats
        print(f"{'unplugged' if s.unplugged else 'stopped'}: {s.frames_in} frames in, "
              f"{s.frames_out} out, {rs.measured_samples} samples measured "
              f"({rs.memory_answers} answers repeated from memory), lab time "
              f"{s.lab_seconds:.3f} s" + (f", faults {s.faults}" if s.faults else ""),
              flush=True)
        return s
    finally:
        backend.close()
