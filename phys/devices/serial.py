"""Host driver for lab devices that speak the serial wire protocol (version 1).

:class:`SerialDevice` is a :class:`~phys.Device` whose measurements come from a
microcontroller over USB-CDC or UART, a pseudo-terminal, or a TCP socket - any URL that
``serial.serial_for_url`` takes. It says HELLO on opening (the device's INFO becomes
:attr:`~phys.Device.info`), splits batches by the device's ``max_batch`` and
``max_frame``, keeps one request in flight, resends the same frame with the same ``seq``
after a timeout derived from the batch size and the baud rate, drops late and corrupt
answers, and raises :class:`SerialDeviceError` naming the port, the message type and the
``seq`` when a request cannot complete. Opening by address (``serial://``,
``socket://``, a bare port path, ``"auto"``, a fallback simulator) is
:func:`phys.devices.ports.open_address`, what ``phys.open`` calls.

Why no interleaving of faults returns a wrong result. Assumed: (L) the link drops,
corrupts, duplicates and delays frames but never reorders them (a serial line, a pty,
TCP), and a corrupted frame fails its CRC-32; (D) a restarted device answers all but
HELLO with ERROR 8 "restarted" until a HELLO greets it, its settings change only by SET
and by restarts, and its INFO ``boot`` changes at every power-up. Kept by the driver:
(H) a QUERY goes out only while *synced*: after the last HELLO sent, every setting made
with :meth:`SerialDevice.set` was SET to its latest values and ACKed, and no sign of a
restart came since. Every HELLO ends that state, as does every sign of a restart (ERROR
8 "restarted" for any ``seq``, an INFO with another ``boot``), which also discards the
answer in hand. Invariant: an accepted RESULT was measured with those settings. Its
``seq`` and CRC make it an answer to a copy of the QUERY, measured at a moment ``t`` of
a boot ``B``; by (D) a copy of some HELLO greeted ``B`` before ``t``, and by (L) that
HELLO was sent before the QUERY. By (H) every SET after the last HELLO before the QUERY
was ACKed, and by (L) the device took them after every copy of every earlier HELLO and
before ``t``: within ``B``, as a boot never comes back, and no older SET after them. An
ACK means the SET took effect (one repeated from memory repeats an answer of the same
boot: a restart clears that memory). So at ``t`` the settings held. Per fault: a drop or
a corruption only removes frames (a damaged one cannot greet, set or answer); a
duplicate is one more copy, and the argument covers every copy; a delay makes answers
late, and a late answer's old ``seq`` gets it dropped; a reset starts a boot that answers
ERROR 8 until greeted, and each greeting is followed by every SET before any QUERY. That
is why settings are SET after *every* HELLO: a later copy of a HELLO (a resend, a
duplicate) can greet a device that restarted after the copy whose INFO, with the old
``boot``, the host took. After a restart the driver greets the device, checks its sizes,
SETs its settings (a restart meanwhile starts that over) and repeats the request; one
that keeps restarting (``retries + 1`` times) is a :class:`SerialDeviceError` naming the
port. Without (D) the driver can only compare ``boot`` after a query that was resent.
"""

from __future__ import annotations

import math
import os
import select
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import serial
import torch

from phys.device import Device, DeviceInfo, ParamSpec
from phys.devices import protocol as P
from phys.devices.serial_link import (
    DeviceRestarted,
    LinkStats,
    SerialDeviceError,
    SerialTimeout,
)

__all__ = [
    "DEFAULT_BAUDRATE", "DeviceRestarted", "LinkStats", "SerialDevice", "SerialDeviceError",
    "SerialTimeout",
]

DEFAULT_BAUDRATE = 115200
#: Bytes allowed for an INFO answer when sizing the HELLO timeout.
INFO_ALLOWANCE = 1024
#: How much longer than the expected transfer and measuring time the host waits.
TIMEOUT_FACTOR = 1.5
#: Most bytes taken from the port in one read.
READ_CHUNK = 1 << 16
#: What a port raises when the device goes away mid-exchange (a pty or USB device that
#: vanishes fails ``tcdrain`` with ``termios.error``, which is not an ``OSError``).
LINK_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError)
if os.name == "posix":
    import termios

    LINK_ERRORS += (termios.error,)


def _fileno(port: Any) -> int | None:
    """The file descriptor of a POSIX serial port (``None`` for sockets and others)."""
    try:
        fd = port.fileno()
    except (AttributeError, OSError, ValueError, serial.SerialException):
        return None
    return fd if isinstance(fd, int) else None


def _port_url(spec: str) -> str:
    """``serial:///dev/ttyACM0`` -> ``/dev/ttyACM0``; other URLs pass unchanged."""
    if spec.startswith("serial://"):
        rest = spec[len("serial://"):]
        if not rest:
            raise ValueError(f"{spec!r} names no port; expected e.g. serial:///dev/ttyACM0")
        return rest
    return spec


class SerialDevice(Device):
    """A lab device on a serial link, speaking the wire protocol version 1.

    Args:
        port: A port path (``/dev/ttyACM0``, ``COM3``) or a pyserial URL
            (``serial:///dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://…``).
        baudrate: Line rate in bits/s; also sizes the timeouts (10 bits per byte).
        retries: How many times a request is sent again before giving up.
        latency: Fixed allowance in seconds added to every timeout (USB polling,
            firmware turnaround, a busy host).
        first_seq: ``seq`` of the first request (default: random, so a reopened link
            is not mistaken for a retry of the last session's request).
        name: Overrides the device's own name in :attr:`info`.
        **serial_options: Passed to ``serial.serial_for_url`` (e.g. ``rtscts=True``).

    Shape:
        - Input: ``(B, n_in)`` in ``[in_min, in_max]`` from the device's INFO.
        - Output: ``(B, n_out)`` measured values, float32.

    Examples::

        >>> from phys.devices.emulator import Emulator
        >>> with Emulator.serving("cavity", n_in=4, n_out=3) as lab:
        ...     with SerialDevice(lab.port) as dev:
        ...         dev.query(torch.zeros(2, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(self, port: str, *, baudrate: int = DEFAULT_BAUDRATE, retries: int = 5,
                 latency: float = 0.05, first_seq: int | None = None, name: str | None = None,
                 **serial_options: Any) -> None:
        super().__init__()
        if not isinstance(port, str) or not port:
            raise ValueError(f"port must be a non-empty string, got {port!r}")
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate < 1:
            raise ValueError(f"baudrate must be a positive int, got {baudrate!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if not (isinstance(latency, (int, float)) and math.isfinite(latency) and latency > 0):
            raise ValueError(f"latency must be a positive number of seconds, got {latency!r}")
        if first_seq is not None and not 0 <= first_seq <= 0xFFFF:
            raise ValueError(f"first_seq must be 0..65535, got {first_seq}")
        self.port_name = port
        self.baudrate, self.retries, self.latency = baudrate, retries, float(latency)
        self._serial_options = dict(serial_options)
        self.link = LinkStats()
        self._seq = int.from_bytes(os.urandom(2), "little") if first_seq is None else first_seq
        self._splitter = P.FrameSplitter()
        self._unread: list[bytes] = []  # frames read but not yet looked at
        self._settings: dict[int, list[float]] = {}  # latest values given to set()
        self._synced = True  # settings known to be in force (see the module docstring)
        self._restart_noted = False  # a sign of a restart since the last greeting
        self._guarded = False  # the device has answered ERROR 8 "restarted" (it has D)
        self._sample_time = 0.0
        self._port: Any = None
        self._fd: int | None = None
        self.info = DeviceInfo(name=name or port, n_in=1, n_out=1, in_min=0.0, in_max=1.0,
                               max_batch=1)  # until INFO arrives
        try:
            self._open_port()
            self._hello(name)
        except BaseException:
            self.close()
            raise

    def _open_port(self) -> None:
        port = self.port_name
        try:
            self._port = serial.serial_for_url(_port_url(port), baudrate=self.baudrate,
                                               timeout=0, write_timeout=None,
                                               **self._serial_options)
            self._fd = _fileno(self._port)
        except (serial.SerialException, OSError) as err:
            raise SerialDeviceError(f"{port}: cannot open the port: {err}") from None
        except ValueError as err:
            raise ValueError(f"{port}: bad port address or serial option: {err}") from None
        try:
            self._port.reset_input_buffer()
        except LINK_ERRORS as err:
            raise SerialDeviceError(f"{port}: cannot use the port: {err}") from None
        self._write(b"\x00")  # ends any partial frame the device holds

    # -- public -----------------------------------------------------------------------
    @property
    def params(self) -> dict[str, dict[str, Any]]:
        """The device's SET-able settings by name (``index``, ``size``, ``min``, ``max``)."""
        return {p["name"]: dict(p) for p in self.info.extra.get("params", [])}

    def _setting(self, name: str) -> dict[str, Any]:
        """The INFO entry of setting ``name`` (the port open); ValueError if unknown."""
        self._check_open()
        known = self.params
        if name not in known:
            raise ValueError(f"{self.port_name}: device has no setting {name!r}; it has "
                             f"{', '.join(known) or 'none'}")
        return known[name]

    def get(self, name: str) -> torch.Tensor:
        """The value of setting ``name`` (in its declared shape): the last one given to
        :meth:`set`, else the power-up value the device reported in INFO.

        Raises:
            ValueError: an unknown setting, or one whose value is not known (never set,
                and the device reports none).
        """
        p = self._setting(name)
        values = self._settings.get(p["index"], p.get("value"))
        if values is None:
            raise ValueError(f"{self.port_name}: the value of setting {name!r} is not known: "
                             f"it was not set, and the device does not report it")
        return torch.tensor(values, dtype=torch.float32).reshape(self.info.param(name).shape)

    def params_state(self) -> dict[str, torch.Tensor]:
        """The settings whose values are known (see :meth:`get`), by name."""
        out = {}
        for name in self.params:
            try:
                out[name] = self.get(name)
            except ValueError:
                continue
        return out

    def load_params_state(self, state: dict[str, Any]) -> None:
        """Set every setting of ``state`` (from :meth:`params_state`)."""
        for name, values in state.items():
            self.set(name, values)

    def set(self, name: str, values: float | Sequence[float] | torch.Tensor) -> None:
        """Change a physical setting of the device (SET).

        The values are the settings from then on: after any restart of the device they
        are SET again before it measures, and a ``set`` that raised
        :class:`SerialDeviceError` is applied again before the next query.

        Raises:
            ValueError: unknown setting, values that are not numbers, wrong number of
                values, or a value outside the setting's ``min .. max`` (nothing is sent).
        """
        p = self._setting(name)
        try:
            v = np.atleast_1d(np.asarray(torch.as_tensor(values, dtype=torch.float64))).ravel()
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{self.port_name}: setting {name!r} takes numbers, got "
                             f"{values!r}") from None
        if v.size != p["size"]:
            raise ValueError(f"{self.port_name}: setting {name!r} takes {p['size']} values, "
                             f"got {v.size}")
        bad = ~np.isfinite(v) | (v < p["min"]) | (v > p["max"])
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{self.port_name}: setting {name!r} value {v[i]!r} at index {i} "
                             f"is outside [{p['min']}, {p['max']}]")
        with self._lock:
            self._settings[p["index"]] = v.tolist()
            if self._synced:
                self._synced = False  # until the ACK: a SET that fails leaves it unknown
                try:
                    self._send_set(p, v.tolist())
                    self._synced = not self._restart_noted
                except DeviceRestarted:
                    pass  # greeted again and every setting SET below
            self._sync()

    def reopen(self) -> None:
        """Open the port again after the link was lost (cable pulled, device power-cycled):
        greet the device, check that it has the same sizes and range, and restore the
        settings made with :meth:`set`. :attr:`stats` and :attr:`link` keep counting.

        Raises:
            SerialDeviceError: the port cannot be opened, nothing answers HELLO, or another
                kind of device answers.
        """
        self._check_open()
        with self._lock:
            self._close()
            self._port, self._fd = None, None
            self._splitter, self._unread = P.FrameSplitter(), []
            self._open_port()
            self._synced = False
            self._sync()
            self.link.reopens += 1

    def ping(self, data: bytes = b"") -> float:
        """Send PING with ``data`` (at most 64 bytes); returns the round trip in seconds."""
        self._check_open()
        if len(data) > P.MAX_PING:
            raise ValueError(f"PING payload must be at most {P.MAX_PING} bytes, got {len(data)}")
        with self._lock:
            t0 = time.perf_counter()
            msg = self._request(P.PING, bytes(data), P.PONG, answer_len=len(data))
            if msg.payload != data:
                raise SerialDeviceError(f"{self.port_name}: PONG seq={msg.seq} echoed "
                                        f"{msg.payload!r}, sent {bytes(data)!r}")
            return time.perf_counter() - t0

    def reset(self) -> None:
        """Send RESET; the device returns to its power-up state and is greeted again."""
        self._check_open()
        with self._lock:
            self._settings.clear()  # the power-up state is what is asked for
            self._request(P.RESET, b"", P.ACK_RESET)
            self._synced = False
            self._sync(asked=True)

    # -- Device hooks -----------------------------------------------------------------
    def _query(self, x: torch.Tensor) -> torch.Tensor:
        i = self.info
        dtype = i.extra["dtype"]
        payload = P.query_payload(x.numpy(), dtype, i.in_min, i.in_max)
        rows = x.shape[0]
        answer_len = 2 + rows * i.n_out * (4 if dtype == "f32" else 2)
        for _ in range(self.retries + 1):
            self._sync()
            boot, resends = self.info.extra.get("boot"), self.link.resends
            try:
                msg = self._transact(P.QUERY, payload, P.RESULT, answer_len=answer_len,
                                     rows=rows)
            except DeviceRestarted:
                continue
            if self._synced and not self._restarted_unseen(boot, resends):
                return self._decode_result(msg, rows)
            # a sign of a restart came with the answer: it may carry power-up settings
        raise SerialDeviceError(f"{self.port_name}: QUERY seq={self._seq}: the device kept "
                                f"restarting ({self.retries + 1} times in one query)")

    def _request(self, msg_type: int, payload: bytes, expect: int, *, answer_len: int = 0,
                 rows: int = 0) -> P.Message:
        """:meth:`_transact` while synced: after a restart the device is greeted, its
        settings are restored, and the request goes out afresh."""
        for _ in range(self.retries + 1):
            self._sync()
            try:
                return self._transact(msg_type, payload, expect, answer_len=answer_len,
                                      rows=rows)
            except DeviceRestarted:
                continue
        raise SerialDeviceError(f"{self.port_name}: {P.TYPE_NAMES[msg_type]} seq={self._seq}: "
                                f"the device kept restarting ({self.retries + 1} times)")

    def _lab_cost(self, n_samples: int) -> tuple[float, None]:
        """Measuring time from INFO's ``sample_time`` plus the bytes of the exchange."""
        i = self.info
        size = 4 if i.extra["dtype"] == "f32" else 2
        wire = n_samples * (i.n_in + i.n_out) * size * 10 / self.baudrate
        return n_samples * self._sample_time + wire, None

    def _close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except (serial.SerialException, OSError):
                pass

    # -- handshake --------------------------------------------------------------------
    def _hello(self, name: str | None) -> None:
        msg = self._transact(P.HELLO, b"", P.INFO, answer_len=INFO_ALLOWANCE)
        where = f"{self.port_name}: INFO seq={msg.seq}"
        try:
            info = P.parse_info(msg.payload)
        except P.PayloadError as err:
            raise SerialDeviceError(f"{where}: {err}") from None
        if info["protocol"] != P.PROTOCOL_VERSION:
            raise SerialDeviceError(
                f"{where}: the device speaks protocol {info['protocol']!r}; this driver "
                f"speaks protocol {P.PROTOCOL_VERSION} only - update the firmware or physnn")
        rows = min(P.rows_per_frame(info["max_frame"], info["n_in"], info["dtype"]),
                   P.rows_per_frame(info["max_frame"], info["n_out"], info["dtype"]),
                   info["max_batch"], 0xFFFF)
        if rows < 1:
            raise SerialDeviceError(f"{where}: max_frame={info['max_frame']} cannot hold one "
                                    f"row of {max(info['n_in'], info['n_out'])} values")
        sample_time = info.get("sample_time", 0.0)
        ok = isinstance(sample_time, (int, float)) and math.isfinite(sample_time)
        self._sample_time = max(0.0, float(sample_time)) if ok else 0.0
        extra = {**{k: v for k, v in info.items() if k not in ("name", "n_in", "n_out",
                                                                 "in_min", "in_max")},
                 "port": self.port_name, "baudrate": self.baudrate,
                 "device_max_batch": info["max_batch"]}
        params = tuple(ParamSpec(name=p["name"], shape=_shape(p), min=p["min"],
                                 max=p["max"], units=str(p.get("units", "")), index=p["index"])
                       for p in info.get("params", []))
        self.info = DeviceInfo(
            name=name or info["name"], n_in=info["n_in"], n_out=info["n_out"],
            in_min=info["in_min"], in_max=info["in_max"], max_batch=rows,
            stochastic=bool(info.get("stochastic", True)), exclusive=True, recoverable=True,
            params=params, extra=extra)

    # -- restarts ---------------------------------------------------------------------
    def _sync(self, asked: bool = False) -> None:
        """Unless synced: greet the device and SET every setting again, until that runs
        through with no sign of a restart (a restart during it starts it over)."""
        for _ in range(self.retries + 1):
            if self._synced:
                return
            try:
                self._greet(asked)
                by_index = {p["index"]: p for p in self.info.extra.get("params", [])}
                for index, values in list(self._settings.items()):
                    if index not in by_index:
                        raise SerialDeviceError(f"{self.port_name}: the device no longer "
                                                f"has the setting with index {index}")
                    self._send_set(by_index[index], values)
            except DeviceRestarted:
                continue
            self._synced = not self._restart_noted
        if not self._synced:
            raise SerialDeviceError(f"{self.port_name}: the device kept restarting while its "
                                    f"settings were restored ({self.retries + 1} tries)")

    def _greet(self, asked: bool = False) -> None:
        """HELLO: the same device must answer; a new ``boot`` is a restart (unless
        ``asked`` for by RESET). Signs of a restart count from here on."""
        known = self.info
        self._hello(known.name)
        before = (known.n_in, known.n_out, known.in_min, known.in_max)
        after = (self.info.n_in, self.info.n_out, self.info.in_min, self.info.in_max)
        if after != before:
            self.info = known
            raise SerialDeviceError(f"{self.port_name}: another device answers: sizes and "
                                    f"range {after} instead of {before}")
        boot = known.extra.get("boot")
        if not asked and boot is not None and self.info.extra.get("boot") != boot:
            self._restart()
        self._restart_noted = False

    def _restart(self) -> None:
        """A sign that the device restarted: its settings are no longer known."""
        if not self._restart_noted:
            self.link.reboots += 1
            self._restart_noted = True
        self._synced = False

    def _restarted_unseen(self, boot: Any, resends: int) -> bool:
        """For a device not known to answer ERROR 8 "restarted": after a query that was
        resent, greet it (and SET its settings) to see whether ``boot`` changed."""
        if self._guarded or not self._settings or boot is None or self.link.resends == resends:
            return False
        self._synced = False
        self._sync()
        return self.info.extra.get("boot") != boot

    def _late_sign(self, msg: P.Message) -> None:
        """A late answer that shows a restart: ERROR 8 "restarted", or an INFO whose
        ``boot`` is not the known one."""
        try:
            if msg.type == P.ERROR:
                code, text = P.parse_error(msg.payload)
                if code == P.HARDWARE and text.startswith(P.RESTARTED):
                    self._guarded = True
                    self._restart()
            elif msg.type == P.INFO:
                boot = self.info.extra.get("boot")
                if boot is not None and P.parse_info(msg.payload).get("boot") != boot:
                    self._restart()
        except P.PayloadError:
            pass  # a malformed late answer shows nothing

    def _send_set(self, p: Mapping[str, Any], values: list[float]) -> None:
        payload = P.set_payload(p["index"], values, self.info.extra["dtype"], p["min"], p["max"])
        self._transact(P.SET, payload, P.ACK_SET)
        self._settings[p["index"]] = values

    def _decode_result(self, msg: P.Message, rows: int) -> torch.Tensor:
        i = self.info
        where = f"{self.port_name}: RESULT seq={msg.seq}"
        try:
            y = P.parse_result(msg.payload, i.n_out, i.extra["dtype"],
                               i.extra.get("out_min", -1.0), i.extra.get("out_max", 1.0))
        except P.PayloadError as err:
            raise SerialDeviceError(f"{where}: {err}") from None
        if y.shape[0] != rows:
            raise SerialDeviceError(f"{where}: {y.shape[0]} rows for a query of {rows}")
        return torch.from_numpy(y.astype(np.float32))

    # -- one request, with retries ----------------------------------------------------
    def _timeout(self, sent: int, answer_len: int, rows: int) -> float:
        answer = P.body_size(answer_len) * 255 // 254 + 2
        wire = (sent + answer) * 10 / self.baudrate
        return self.latency + TIMEOUT_FACTOR * (wire + rows * self._sample_time)

    def _transact(self, msg_type: int, payload: bytes, expect: int, *, answer_len: int = 0,
                  rows: int = 0) -> P.Message:
        self._seq = (self._seq + 1) & 0xFFFF
        seq, name = self._seq, P.TYPE_NAMES[msg_type]
        frame = P.encode_frame(msg_type, seq, payload)
        timeout = self._timeout(len(frame), answer_len, rows)
        self.link.requests += 1
        for attempt in range(self.retries + 1):
            if attempt:
                self.link.resends += 1
            self._write(frame, name, seq)
            msg = self._await(seq, name, expect, time.monotonic() + timeout, timeout)
            if msg is not None:
                return msg
        raise SerialTimeout(f"{self.port_name}: no valid answer to {name} seq={seq} after "
                            f"{self.retries + 1} tries of {timeout:.3g} s")

    def _await(self, seq: int, name: str, expect: int, deadline: float,
               timeout: float) -> P.Message | None:
        """The answer to ``seq``, or ``None`` to send again (timeout or damaged request)."""
        waited_busy = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.link.timeouts += 1
                return None
            if not self._unread:
                self._unread = self._splitter.feed(self._read(left, name, seq))
            while self._unread:
                raw = self._unread.pop(0)
                try:
                    msg = P.decode_frame(raw)
                except P.FrameError as err:
                    if err.version is not None and err.seq == seq:
                        raise SerialDeviceError(
                            f"{self.port_name}: {name} seq={seq} answered in protocol "
                            f"version {err.version} frames; this driver speaks protocol "
                            f"{P.PROTOCOL_VERSION} only") from None
                    self.link.bad_frames += 1
                    continue
                if msg.seq != seq:
                    self.link.stale += 1
                    self._late_sign(msg)
                    continue
                if msg.type == P.ERROR:
                    code, text = self._error(msg, name)
                    if code == P.BAD_FRAME:  # our frame arrived damaged: send it again
                        self.link.device_errors += 1
                        return None
                    if code == P.HARDWARE and text.startswith(P.RESTARTED):
                        self._guarded = True
                        self._restart()
                        raise DeviceRestarted(f"{self.port_name}: {name} seq={seq}: {text}")
                    if code == P.BUSY:  # still measuring an earlier copy: wait once more
                        self.link.busy += 1
                        if not waited_busy:
                            waited_busy, deadline = True, time.monotonic() + timeout
                        continue
                    raise SerialDeviceError(f"{self.port_name}: {name} seq={seq} refused with "
                                            f"ERROR {code} ({P.ERROR_NAMES.get(code, '?')}): "
                                            f"{text}")
                if msg.type != expect:
                    raise SerialDeviceError(
                        f"{self.port_name}: {name} seq={seq} answered with {msg.name} "
                        f"(0x{msg.type:02X}), expected {P.TYPE_NAMES[expect]}")
                return msg

    def _error(self, msg: P.Message, name: str) -> tuple[int, str]:
        try:
            return P.parse_error(msg.payload)
        except P.PayloadError as err:
            raise SerialDeviceError(f"{self.port_name}: {name} seq={msg.seq}: malformed "
                                    f"ERROR: {err}") from None

    # -- bytes ------------------------------------------------------------------------
    def _write(self, data: bytes, name: str = "HELLO", seq: int | None = None) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except LINK_ERRORS as err:
            raise SerialDeviceError(f"{self.port_name}: writing {name} seq={seq} failed "
                                    f"(device unplugged?): {err}") from None
        self.link.bytes_sent += len(data)

    def _read(self, left: float, name: str, seq: int) -> bytes:
        """What arrives within ``left`` seconds: some bytes, or ``b""``."""
        try:
            if self._fd is not None:  # wait exactly as long as asked, then take it all
                if not select.select([self._fd], [], [], left)[0]:
                    return b""
                data = self._port.read(READ_CHUNK)
            else:  # a port without a file descriptor: poll
                data = self._port.read(READ_CHUNK)
                if not data:
                    time.sleep(min(left, 1e-3))
        except LINK_ERRORS as err:
            raise SerialDeviceError(f"{self.port_name}: reading the answer to {name} seq={seq} "
                                    f"failed (device unplugged?): {err}") from None
        self.link.bytes_received += len(data)
        return data

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"device {self.info.name!r} is closed")


def _shape(param: dict[str, Any]) -> tuple[int, ...]:
    """A setting's shape: INFO's ``shape`` when it holds ``size`` values, else flat."""
    shape = param.get("shape")
    if isinstance(shape, list) and shape and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape) \
            and math.prod(shape) == param["size"]:
        return tuple(shape)
    return (param["size"],)

