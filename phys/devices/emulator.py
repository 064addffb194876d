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

On TCP the emulator serves ``clients`` hosts at once (default one). Every further host
that connects is refused: its first frame is answered ERROR 8 ``"in use: ..."`` (the host
driver raises it as a :class:`~phys.devices.serial.SerialDeviceError` naming the port)
and the connection is closed; beyond ``max_connections`` open connections (idle ones
included) a new one is closed at once. With one client the device keeps its state from
one connection to the next, as a rig does; with ``clients > 1`` each connection gets a
device of its own in its power-up state, so one host's SET never changes another's
results. A connection holds at most ``max_buffer`` bytes (requests not yet taken by the
device, answers not yet read); a TCP host past that (one that sends without reading) is
cut off, a pty drops the excess.
"""

from __future__ import annotations

import contextlib
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
from phys.devices.connections import IN_USE, SEND_BUFFER, Connection, publish_link, unpublish_link
from phys.devices.faults import EmulatorStats, Faults, corrupt, seq_of
from phys.devices.responder import Responder, ResponderStats

__all__ = ["Emulator", "EmulatorStats", "Faults"]


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
        clients: TCP hosts served at once, each with a device state of its own when more
            than one; a further host is refused (see the module docstring).
        max_connections: Open TCP connections allowed, idle and refused ones included; a
            connection past it is closed at once.
        max_buffer: Bytes one connection may hold (requests on their way to the device,
            answers not yet read); a TCP host past it is cut off.
        **responder_options: ``dtype``, ``max_batch``, ``max_frame``, ``out_range``,
            ``name`` of :class:`~phys.devices.responder.Responder`.

    :attr:`responder` is the device state of the pty, and of every TCP connection when
    ``clients`` is 1; :meth:`device_stats` sums the counts of all device states.

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
                 clients: int = 1, max_connections: int = 16, max_buffer: int = 1 << 20,
                 **responder_options: Any) -> None:
        for key, value in (("settle", settle), ("conversion", conversion),
                           ("turnaround", turnaround)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{key} must be a number of seconds >= 0, got {value!r}")
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate < 1:
            raise ValueError(f"baudrate must be a positive int, got {baudrate!r}")
        for key, value in (("queue", queue), ("clients", clients),
                           ("max_connections", max_connections)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive int, got {value!r}")
        if max_connections < clients:
            raise ValueError(f"max_connections must be >= clients ({clients}), got "
                             f"{max_connections}")
        if isinstance(faults, str):
            faults = Faults.parse(faults)
        self.faults = faults or Faults()
        self.baudrate, self.realtime = baudrate, bool(realtime)
        self.settle, self.conversion, self.turnaround = settle, conversion, turnaround
        self._responder_options = dict(responder_options, sample_time=settle + conversion)
        self.responder = Responder(device, seed=fault_seed, **self._responder_options)
        least = 8 * self.responder.frame_limit  # a request and its answers, many times over
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) \
                or max_buffer < least:
            raise ValueError(f"max_buffer must be an int >= {least} bytes (8 frames of "
                             f"max_frame={self.responder.max_frame}), got {max_buffer!r}")
        self.clients, self.max_connections, self.max_buffer = clients, max_connections, \
            max_buffer
        self.fault_seed = fault_seed
        self.device = device
        self.stats = EmulatorStats()
        self.port: str | None = None
        self._rng = random.Random(fault_seed + 1)
        self._links: dict[int, Connection] = {}
        self._next_link = 0
        self._wall: list[tuple[float, int, str, int, bytes]] = []  # delayed frames
        self._held: dict[tuple[str, int], float] = {}  # a direction is held until then
        self._tick = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._slave: int | None = None
        self._server: socket.socket | None = None
        self._link_path: str | None = None
        self._retired = ResponderStats()  # devices of connections that have closed
        self._build_model(queue)

    # -- construction helpers ---------------------------------------------------------
    @classmethod
    @contextlib.contextmanager
    def serving(cls, device: str | Device, *, tcp: int | None = None, link: str | None = None,
                **options: Any) -> Iterator[Emulator]:
        """Context manager: an emulator running in a background thread on a new pty (its
        path also at symlink ``link``) or on TCP port ``tcp`` (0: any free one); closes the
        backend on exit.

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
                emulator.open_pty(link=link)
            elif link is not None:
                raise ValueError("link needs a pty: give link or tcp, not both")
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
    def open_pty(self, link: str | None = None) -> str:
        """Serve on a new pseudo-terminal; returns (and sets :attr:`port` to) its path.

        Args:
            link: Also point this symlink at the pty (replaced atomically, removed when
                the emulator stops), so that a host opened on ``link`` finds a restarted
                emulator again with :meth:`~phys.devices.serial.SerialDevice.reopen`.
        """
        if link is not None and os.path.lexists(link) and not os.path.islink(link):
            raise ValueError(f"link {link!r} exists and is not a symlink; not replacing it")
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing before the host configures the port
        os.set_blocking(master, False)
        self._slave = slave  # held open: the pty lives on while hosts come and go
        self._links[0] = Connection(master, self.responder.frame_limit, self.responder)
        self.port = os.ttyname(slave)
        if link is not None:
            publish_link(link, self.port)
            self._link_path = link
        return self.port

    def open_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on a TCP port, one link per connected host; returns the ``socket://`` URL."""
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
            raise ValueError(f"TCP port must be in 0..65535, got {port!r}")
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
        for key in list(self._links):
            self._drop_link(key)
        if self._link_path is not None and self.port is not None:
            unpublish_link(self._link_path, self.port)
            self._link_path = None
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
        links = list(self._links.items())
        readers: list[Any] = [link.fd for _, link in links]
        if self._server is not None:
            readers.append(self._server)
        writers = [link.fd for _, link in links if link.out]
        readable, _, _ = select.select(readers, writers, [], wait)
        for key, link in links:  # first: a host that hung up frees its place
            if link.fd in readable and not link.closed:
                self._read(key, link)
                if self._stop.is_set():
                    return
        if self._server is not None and self._server in readable:
            self._accept()
        self._advance(time.monotonic())
        self._flush()

    # -- connections --------------------------------------------------------------------
    def _accept(self) -> None:
        """A host connects: a device for it, a refusal, or (past the cap) a closed door."""
        assert self._server is not None
        try:
            conn, _ = self._server.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(self._links) >= self.max_connections:
            self.stats.refused += 1
            conn.close()
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        served = sum(link.responder is not None for link in self._links.values())
        responder: Responder | None = None
        if served < self.clients:
            responder = self.responder if self.clients == 1 else Responder(
                self.device, seed=self.fault_seed * 7919 + self._next_link + 1,
                power_up_params=self.responder.power_up_params, **self._responder_options)
        else:
            self.stats.refused += 1
        self._next_link += 1
        self._links[self._next_link] = Connection(conn, self.responder.frame_limit, responder)

    def _read(self, key: int, link: Connection) -> None:
        data = link.recv()
        if link.closed:  # a TCP host hung up
            self._drop_link(key)
            return
        now = time.monotonic()
        self.stats.bytes_in += len(data)
        for frame in link.splitter.feed(data):
            if link.responder is None:
                self._refuse(link, frame)
                continue
            self._inbound(key, frame, now)
            if self._stop.is_set() or link.closed:
                return

    def _refuse(self, link: Connection, frame: bytes) -> None:
        """Answer a refused host's first frame ERROR 8 "in use"; ignore the rest."""
        seq = seq_of(frame)
        if link.answered or seq is None:
            return
        link.answered = True
        link.out += P.encode_frame(P.ERROR, seq, P.error_payload(
            P.HARDWARE, f"{IN_USE}: this emulator serves {self.clients} host(s) at a time "
                        f"and all are connected (phys emulate --clients N for more)"))

    def _flush(self) -> None:
        now = time.monotonic()
        for key, link in list(self._links.items()):
            if link.out:
                self.stats.bytes_out += link.send()
            if link.responder is not None and not link.closed:
                continue
            if link.closed or now > link.refused_until:
                self._drop_link(key)
            elif link.answered and not link.out:  # said why; the host hangs up next
                with contextlib.suppress(OSError):
                    link.fd.shutdown(socket.SHUT_WR)

    def _drop_link(self, key: int) -> None:
        link = self._links.pop(key, None)
        if link is None:
            return
        link.close()
        for direction in ("in", "out"):
            self._held.pop((direction, key), None)
        r = link.responder
        if r is not None and r is not self.responder:
            for name, value in r.stats.as_dict().items():
                setattr(self._retired, name, getattr(self._retired, name) + value)

    def device_stats(self) -> ResponderStats:
        """The device side's counts, summed over every connection's device state."""
        total = ResponderStats(**self.responder.stats.as_dict())
        others = [link.responder for link in self._links.values()
                  if link.responder is not None and link.responder is not self.responder]
        for stats in [self._retired, *(r.stats for r in others)]:
            for name, value in stats.as_dict().items():
                setattr(total, name, getattr(total, name) + value)
        return total

    def _buffer(self, key: int, n: int, direction: str) -> bool:
        """Count ``n`` more bytes held for connection ``key``; past :attr:`max_buffer`
        a TCP host is cut off (a pty drops them) and ``False`` is returned."""
        link = self._links.get(key)
        if link is None:
            return False
        if link.buffered + n > self.max_buffer:
            self.stats.overflow_bytes += n
            if link.is_socket:
                self.stats.cut_off += 1
                self._drop_link(key)
            return False
        if direction == "in":
            link.pending_in += n
        elif direction == "held":
            link.held_out += n
        return True

    def _unbuffer(self, key: int, n: int, direction: str) -> None:
        link = self._links.get(key)
        if link is not None:
            if direction == "in":
                link.pending_in = max(0, link.pending_in - n)
            else:
                link.held_out = max(0, link.held_out - n)

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
                self._unbuffer(link, len(frame), "held")
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
        if direction == "out" and not self._buffer(link, len(frame), "held"):
            return True  # thrown away: the host does not read
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
            if not self._buffer(link, len(frame), "in"):
                return
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
        if not self._buffer(key, len(frame), "out"):  # gone, or cut off for not reading
            return
        self.stats.frames_out += 1
        self._links[key].out += frame

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
        self._unbuffer(link, len(frame), "in")
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
            holder = self._links.get(link)
            if holder is None or holder.responder is None:  # that host has gone
                continue
            responder = holder.responder
            if self._hit("reset"):
                responder.power_up()
                self._rx.items[:] = [item for item in self._rx.items if item[0] != link]
                self.stats.resets += 1
                continue
            if self.turnaround:
                yield env.timeout(self.turnaround)
            answers, rows = responder.handle(frame)
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
