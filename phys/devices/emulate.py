"""What ``phys emulate`` runs: its options (:class:`EmulateOptions`, from which the
command's flags are generated) and :func:`serve`.

Examples::

    >>> EmulateOptions(tcp=99999)
    Traceback (most recent call last):
    ...
    ValueError: tcp must be in 0..65535, got 99999
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from typing import Any

from phys.devices import protocol as P
from phys.devices.emulator import Emulator
from phys.devices.faults import EmulatorStats
from phys.options import Options, option, option_fields

__all__ = ["EmulateOptions", "serve"]


@dataclass
class EmulateOptions(Options):
    """The options of ``phys emulate`` (the keyword arguments of :class:`Emulator`, the
    simulator behind it, where it serves and for how long)."""

    device: str = option("cavity", help="simulator behind the protocol")
    device_options: dict[str, Any] = option(
        default_factory=dict, help="simulator option, e.g. -o n_in=16 -o n_out=8")
    baud: int = option(115200, help="modelled line rate, bits/s", min=1)
    settle: float = option(0.0, help="modelled settle time per sample, s", min=0)
    conversion: float = option(0.0, help="modelled conversion time per sample, s", min=0)
    turnaround: float = option(0.0, help="modelled firmware time per request, s", min=0)
    realtime: bool = option(False, help="answer when a real rig would, not at once on "
                                        "virtual time")
    faults: str = option("", help="fault rates (none by default), e.g. drop=0.01,"
                                  "corrupt=0.01,duplicate=0.01,delay=0.05,reset=0.001,"
                                  "unplug=0.0001,delay_seconds=0.2")
    fault_seed: int = option(0, help="seeds the faults and the boot numbers")
    dtype: str = option("f32", help="values on the wire", choices=("f32", "i16"))
    out_range: tuple[float, ...] | None = option(
        None, help="MIN MAX: span of i16 outputs (needed with --dtype i16)")
    max_batch: int = option(256, help="largest batch one QUERY may carry", min=1, max=0xFFFF)
    max_frame: int | None = option(None, help="largest body, bytes (None: what max-batch "
                                              "needs)", min=P.MIN_MAX_FRAME, max=P.MAX_BODY)
    queue: int = option(4, help="frames the device input queue holds", min=1, max=1 << 16)
    tcp: int | None = option(None, help="serve on this TCP port of 127.0.0.1 instead of a "
                                        "pty (0: any free port)", min=0, max=0xFFFF)
    clients: int = option(1, help="TCP hosts served at once, each with a device of its own; "
                                  "another host is answered ERROR 8 'in use' and "
                                  "disconnected", min=1, max=1024)
    max_connections: int = option(16, help="open TCP connections allowed, idle and refused "
                                           "ones included; more are closed at once",
                                  min=1, max=1024)
    max_buffer: int = option(1 << 20, help="bytes one connection may hold (requests on "
                                           "their way, answers not read); a TCP host past "
                                           "it is cut off", min=1, max=1 << 30)
    link: str | None = option(None, help="keep a symlink at this path to the pty (replaced "
                                         "on restart, removed on exit)")
    port_file: str | None = option(None, help="also write the port to this file")
    duration: float | None = option(None, help="stop after this many seconds", min=0)
    threads: int = option(1, help="torch threads for the simulator", min=1, max=1024)

    def check(self) -> None:
        """Every field's type and bounds; a bounded int out of range names its range."""
        for f, _ in option_fields(type(self)):
            value, lo, hi = getattr(self, f.name), f.metadata["min"], f.metadata["max"]
            if lo is not None and hi is not None and isinstance(value, int) \
                    and not isinstance(value, bool) and not lo <= value <= hi:
                raise ValueError(f"{f.name} must be in {lo}..{hi}, got {value!r}")
        super().check()
        if self.link is not None and self.tcp is not None:
            raise ValueError("link needs a pty: give link or tcp, not both")
        if self.link == "" or self.port_file == "":
            raise ValueError(f"{'link' if self.link == '' else 'port_file'} must be a path, "
                             f"got ''")

    def emulator_options(self) -> dict[str, Any]:
        """The keyword arguments of :class:`Emulator`."""
        return dict(baudrate=self.baud, settle=self.settle, conversion=self.conversion,
                    turnaround=self.turnaround, realtime=self.realtime, faults=self.faults,
                    fault_seed=self.fault_seed, dtype=self.dtype, out_range=self.out_range,
                    max_batch=self.max_batch, max_frame=self.max_frame, queue=self.queue,
                    clients=self.clients, max_connections=self.max_connections,
                    max_buffer=self.max_buffer)


@dataclass
class _Stopper:
    """Stops an emulator on SIGTERM, also one that arrives before the emulator exists."""

    emulator: Emulator | None = None
    asked: threading.Event = field(default_factory=threading.Event)

    def __call__(self, *_: object) -> None:
        self.asked.set()
        if self.emulator is not None:
            self.emulator.request_stop()

    def attach(self, emulator: Emulator) -> None:
        self.emulator = emulator
        if self.asked.is_set():
            emulator.request_stop()


def serve(options: EmulateOptions) -> EmulatorStats:
    """Open the simulator, serve it on a new pty (or a TCP port), print the port and
    write it to ``port_file`` (and the pty's path to symlink ``link``); serve until
    Ctrl-C, SIGTERM, an unplug fault or ``duration`` seconds; print a summary.

    SIGTERM is caught from the start, so the summary is printed whenever it arrives.
    Returns the final stats.
    """
    stopper = _Stopper()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stopper) if main else None
    try:
        return _serve(options, stopper)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _serve(o: EmulateOptions, stopper: _Stopper) -> EmulatorStats:
    import torch

    from phys import registry

    torch.set_num_threads(o.threads)
    backend = registry.open(o.device, **o.device_options)
    try:
        emulator = Emulator(backend, **o.emulator_options())
        stopper.attach(emulator)
        timer = threading.Timer(o.duration, emulator.request_stop) \
            if o.duration is not None else None
        try:
            _open(emulator, o)
            if timer is not None:
                timer.daemon = True
                timer.start()
            emulator.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            if timer is not None:
                timer.cancel()
            emulator.stop()
        _summary(emulator)
        return emulator.stats
    finally:
        backend.close()


def _open(emulator: Emulator, o: EmulateOptions) -> None:
    """Open the port; print it, write it to ``port_file``."""
    from phys.atomic import write_text

    port = emulator.open_pty(link=o.link) if o.tcp is None else emulator.open_tcp(port=o.tcp)
    r = emulator.responder
    clock = "real time" if emulator.realtime else "virtual time"
    print(f"serving {r.name} (n_in={r.n_in}, n_out={r.n_out}, {r.dtype}, max_batch="
          f"{r.max_batch}) at {emulator.baudrate} baud, {clock}, on", flush=True)
    print(port, flush=True)
    if o.port_file:
        write_text(o.port_file, port + "\n")


def _summary(emulator: Emulator) -> None:
    s, rs = emulator.stats, emulator.device_stats()
    turned = f", {s.refused} connections refused" if s.refused else ""
    cut = f", {s.cut_off} cut off for not reading" if s.cut_off else ""
    print(f"{'unplugged' if s.unplugged else 'stopped'}: {s.frames_in} frames in, "
          f"{s.frames_out} out, {rs.measured_samples} samples measured "
          f"({rs.memory_answers} answers repeated from memory), lab time "
          f"{s.lab_seconds:.3f} s" + (f", faults {s.faults}" if s.faults else "")
          + turned + cut, flush=True)
