"""``visa:RESOURCE``: SCPI instruments through PyVISA as one :class:`~phys.Device`.

A rig file (:mod:`phys.devices.visa_rig`) declares the instruments and the commands; this
driver opens them (``pyvisa`` with the pure-Python ``pyvisa-py`` backend by default),
checks each ``*IDN?``, and measures a batch: the inputs are set, the rig settles, the
trigger fires and the outputs are read and parsed, row by row or, when the rig says the
instrument loops a batch itself, as one upload and one read. Each instrument's error
queue (``SYST:ERR?``) is read after every batch and an error is raised with its text.

Examples::

    >>> import phys
    >>> phys.open("visa:", rig="no-such-rig.toml")
    Traceback (most recent call last):
    ...
    FileNotFoundError: rig file 'no-such-rig.toml' does not exist
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from phys.device import Device, DeviceInfo, DeviceUnavailable
from phys.devices.visa_rig import Instrument, Output, Rig, RigError, load_rig

__all__ = ["VisaDevice", "VisaInstrumentError", "VisaReplyError", "VisaTimeout",
           "VisaUnavailable", "open_visa"]

#: Most entries read from one error queue after a batch (a queue that never empties).
MAX_ERRORS = 32
_ERROR_CODE = re.compile(r"^\s*([+-]?\d+)\s*(,|$)")


class VisaUnavailable(DeviceUnavailable):
    """An instrument that cannot be opened or stops answering."""


class VisaTimeout(VisaUnavailable, TimeoutError):
    """An instrument did not answer within its timeout."""


class VisaReplyError(RuntimeError):
    """A reply that does not parse or has the wrong number of values (names instrument,
    command and reply)."""


class VisaInstrumentError(RuntimeError):
    """An instrument reported errors in its queue (``SYST:ERR?``); the text is theirs."""


def _pyvisa() -> Any:
    try:
        import pyvisa
    except ImportError:  # pragma: no cover - the visa extra is part of dev
        raise ImportError("visa: devices need pyvisa and pyvisa-py: pip install "
                          "'physnn[visa]'") from None
    return pyvisa


def _short(reply: Any, limit: int = 80) -> str:
    text = repr(reply)
    return text if len(text) <= limit else text[:limit] + "...'"


class _Link:
    """One open instrument: its resource and the calls that name it in errors."""

    def __init__(self, inst: Instrument, resource: str, handle: Any) -> None:
        self.inst, self.resource, self.handle = inst, resource, handle

    def where(self) -> str:
        return f"instrument {self.inst.name!r} ({self.resource})"

    def call(self, command: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, with PyVISA's I/O errors raised as :class:`VisaUnavailable`."""
        errors = _pyvisa().errors
        try:
            return fn()
        except errors.VisaIOError as err:
            if err.error_code == _pyvisa().constants.StatusCode.error_timeout:
                raise VisaTimeout(f"{self.where()} did not answer {command!r} within "
                                  f"{self.inst.timeout:g} s") from None
            raise VisaUnavailable(f"{self.where()} failed on {command!r}: {err}") from None

    def write(self, command: str) -> None:
        self.call(command, lambda: self.handle.write(command))

    def query(self, command: str) -> str:
        """The reply to ``command``, without its termination.

        Raises:
            VisaReplyError: a reply that is not ASCII text (naming its bytes).
        """
        self.write(command)
        raw = self.call(command, self.handle.read_raw)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.reply_error(command, raw, "not ASCII text") from None
        end = self.inst.read_termination
        return text[:-len(end)] if end and text.endswith(end) else text

    def reply_error(self, command: str, reply: Any, why: str) -> VisaReplyError:
        return VisaReplyError(f"{self.where()} answered {command!r} with {_short(reply)}: "
                              f"{why}")

    def drain(self) -> None:
        """Throw away what is still buffered (after a timeout or a garbled reply)."""
        handle = self.handle
        old = handle.timeout
        try:
            handle.timeout = 50
            for _ in range(8):
                handle.read_raw()
        except Exception:  # noqa: BLE001 - a timeout ends the drain, as it should
            pass
        finally:
            handle.timeout = old


def parse_ascii(link: _Link, command: str, reply: str, separator: str,
                count: int) -> list[float]:
    """``count`` numbers from an ASCII list reply.

    Raises:
        VisaReplyError: a value that is not a finite number, or the wrong count.
    """
    parts = [p.strip() for p in reply.strip().split(separator)]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        raise link.reply_error(command, reply, f"{bad!r} is not a number") from None
    if len(values) != count:
        raise link.reply_error(command, reply, f"{len(values)} values, expected {count}")
    return values


def read_block(link: _Link, command: str) -> bytes:
    """The payload of the IEEE 488.2 definite-length block answering ``command``
    (``#<n><length><payload>`` and the read termination), read strictly.

    Raises:
        VisaReplyError: anything else (naming the bytes read).
    """
    read = link.handle.read_bytes
    head = link.call(command, lambda: read(2))
    if head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
        raise link.reply_error(command, head, "not an IEEE 488.2 definite-length block")
    digits = link.call(command, lambda: read(int(head[1:2])))
    if not digits.isdigit():
        raise link.reply_error(command, head + digits, "a block length that is not a number")
    payload = link.call(command, lambda: read(int(digits))) if int(digits) else b""
    end = link.inst.read_termination.encode()
    if end:
        tail = link.call(command, lambda: read(len(end)))
        if tail != end:
            raise link.reply_error(command, head + digits + payload[:16] + b"..." + tail,
                                   "the block is longer than its header says")
    return payload


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class VisaDevice(Device):
    """A rig of SCPI instruments, opened from a checked rig file.

    Args:
        rig: The rig (or the path of its TOML file).
        address: The resource of the one instrument whose rig entry names none
            (``visa:ASRL/dev/ttyUSB0::INSTR`` gives ``ASRL/dev/ttyUSB0::INSTR``).
        resources: Resources by instrument name, over the rig file's.
        backend: The PyVISA library: ``"@py"`` (pyvisa-py), ``"FILE.yaml@sim"``
            (pyvisa-sim), or ``""`` for the system VISA.
        retries: Times a batch is measured again after a timeout or a reply that does
            not parse (the inputs are set again, so nothing is half-applied).

    Raises:
        RigError: the rig file does not check (before anything is sent).
        VisaUnavailable: an instrument cannot be opened or does not answer ``*IDN?``.
        VisaReplyError: an ``*IDN?`` that does not match the rig's pattern.
        VisaInstrumentError: a ``setup`` command the instrument reports as an error.
    """

    def __init__(self, rig: Rig | str | Path, *, address: str = "",
                 resources: Mapping[str, str] | None = None, backend: str = "@py",
                 retries: int = 1) -> None:
        super().__init__()
        self.rig = rig if isinstance(rig, Rig) else load_rig(rig)
        if resources is not None and not isinstance(resources, Mapping):
            raise ValueError(f"resources must map instrument names to VISA resources, got "
                             f"{resources!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if not isinstance(backend, str):
            raise ValueError(f"backend must be a PyVISA library string such as '@py', got "
                             f"{backend!r}")
        self._resources = self.rig.resources(address, resources)
        self.backend, self.retries = backend, retries
        self._links: dict[str, _Link] = {}
        self._manager: Any = None
        self._last_seconds: float | None = None
        self._unsure = False  # after a failed exchange: what is buffered is unknown
        self.idn = self._open()
        r = self.rig
        self.info = DeviceInfo(
            name=f"visa:{r.name}", n_in=r.inputs.n, n_out=r.n_out, in_min=r.in_range[0],
            in_max=r.in_range[1], max_batch=r.max_batch, stochastic=r.stochastic,
            exclusive=True, recoverable=True,
            extra={"rig": r.source, "resources": dict(self._resources), "idn": self.idn,
                   "batch": r.batch, "settle_seconds": r.settle, "backend": backend,
                   "commands": {"set": r.inputs.set,
                                "trigger": None if r.trigger is None else r.trigger.command,
                                "read": [o.query for o in r.outputs]}})

    # -- opening ----------------------------------------------------------------------
    def _open(self) -> dict[str, str]:
        pyvisa = _pyvisa()
        try:
            self._manager = self._manager or pyvisa.ResourceManager(self.backend)
        except (OSError, ValueError, pyvisa.errors.Error) as err:
            raise VisaUnavailable(f"PyVISA backend {self.backend!r} cannot be loaded: "
                                  f"{err}") from None
        idn = {}
        try:
            for name, inst in self.rig.instruments.items():
                self._links[name] = self._open_one(inst, self._resources[name])
            for name, link in self._links.items():
                idn[name] = self._identify(link)
            for link in self._links.values():
                self._setup(link)
        except BaseException:
            self._close()
            raise
        return idn

    def _open_one(self, inst: Instrument, resource: str) -> _Link:
        pyvisa = _pyvisa()
        options: dict[str, Any] = {"read_termination": inst.read_termination,
                                   "write_termination": inst.write_termination,
                                   "timeout": round(inst.timeout * 1000)}
        if inst.baud_rate is not None:
            options["baud_rate"] = inst.baud_rate
        try:
            handle = self._manager.open_resource(resource, **options)
        except (pyvisa.errors.Error, ValueError, OSError) as err:
            raise VisaUnavailable(f"instrument {inst.name!r}: cannot open {resource!r} "
                                  f"({self.rig.source}): {err}") from None
        return _Link(inst, resource, handle)

    def _identify(self, link: _Link) -> str:
        reply = link.query("*IDN?").strip()
        if not link.inst.idn_matches(reply):
            raise link.reply_error("*IDN?", reply, f"the rig {self.rig.source} expects "
                                   f"idn {link.inst.idn!r}; is this the right instrument?")
        return reply

    def _setup(self, link: _Link) -> None:
        self._read_errors(link)  # errors left from before this host: not ours
        for command in link.inst.setup:
            link.write(command)
        self._raise_errors([link], "after its setup commands")

    def reopen(self) -> None:
        """Close the instruments and open them again (``*IDN?`` checked, setup sent).

        Raises:
            VisaUnavailable: an instrument still does not answer.
        """
        self._close()
        self.idn = self._open()
        self._unsure = False

    # -- measuring --------------------------------------------------------------------
    def _query(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.double().cpu().tolist()
        failure: Exception | None = None
        for _ in range(self.retries + 1):
            t0 = time.perf_counter()
            try:
                if self._unsure:
                    self._resync()
                    self._unsure = False
                out = self._measure(rows)
                self._raise_errors(list(self._links.values()), "after a batch")
            except (VisaTimeout, VisaReplyError) as err:
                failure, self._unsure = err, True  # resync before the next exchange
                continue
            self._last_seconds = time.perf_counter() - t0
            return torch.tensor(out, dtype=torch.float32)
        assert failure is not None
        raise failure

    def _measure(self, rows: list[list[float]]) -> list[list[float]]:
        if self.rig.batch == "instrument":
            flat = [v for row in rows for v in row]
            self._set(flat, len(rows))
            return self._trigger_and_read(len(rows))
        out = []
        for row in rows:
            self._set(row, 1)
            out += self._trigger_and_read(1)
        return out

    def _set(self, values: list[float], rows: int) -> None:
        spec = self.rig.inputs
        link = self._links[spec.instrument]
        if spec.mode == "each":
            for index, value in enumerate(values):
                link.write(spec.command(index, value))
        elif spec.encoding == "ascii":
            link.write(spec.vector(values, rows))
        else:
            prefix = spec.prefix(rows)
            link.call(prefix, lambda: link.handle.write_binary_values(
                prefix, values, datatype=spec.datatype, is_big_endian=spec.big_endian))

    def _trigger_and_read(self, rows: int) -> list[list[float]]:
        if self.rig.settle:
            time.sleep(self.rig.settle)
        trigger = self.rig.trigger
        if trigger is not None:
            link = self._links[trigger.instrument]
            link.write(trigger.command.format(rows=rows))
            if trigger.wait:
                reply = link.query(trigger.wait)
                if parse_ascii(link, trigger.wait, reply, ",", 1) != [1.0]:
                    raise link.reply_error(trigger.wait, reply, "expected 1 (done)")
        parts = [self._read(out, rows) for out in self.rig.outputs]
        return [[v for part in parts for v in part[r]] for r in range(rows)]

    def _read(self, out: Output, rows: int) -> list[list[float]]:
        link = self._links[out.instrument]
        command, count = out.query.format(rows=rows), out.n * rows
        if out.format == "ascii":
            values = parse_ascii(link, command, link.query(command), out.separator, count)
        else:
            values = self._read_block(link, command, out, count)
        return [values[r * out.n:(r + 1) * out.n] for r in range(rows)]

    def _read_block(self, link: _Link, command: str, out: Output, count: int) -> list[float]:
        link.write(command)
        payload = read_block(link, command)
        size = struct.calcsize(out.datatype)
        if len(payload) != count * size:
            raise link.reply_error(command, payload[:40], f"a block of {len(payload)} bytes, "
                                   f"expected {count} values of {size} bytes")
        order = ">" if out.big_endian else "<"
        return list(struct.unpack(f"{order}{count}{out.datatype}", payload))

    # -- the error queues -------------------------------------------------------------
    def _read_errors(self, link: _Link) -> list[str]:
        command = link.inst.errors
        if not command:
            return []
        found = []
        for _ in range(MAX_ERRORS):
            reply = link.query(command).strip()
            code = _ERROR_CODE.match(reply)
            if code is None:
                raise link.reply_error(command, reply, "not an error-queue entry "
                                       "('CODE,\"text\"')")
            if int(code.group(1)) == 0:
                return found
            found.append(reply)
        return found

    def _raise_errors(self, links: list[_Link], when: str) -> None:
        for link in links:
            found = self._read_errors(link)
            if found:
                raise VisaInstrumentError(f"{link.where()} reported {when}: "
                                          f"{'; '.join(found)}")

    # -- the rest of the contract -----------------------------------------------------
    def _lab_cost(self, n_samples: int) -> tuple[float | None, None]:
        seconds, self._last_seconds = self._last_seconds, None
        return seconds, None

    def _resync(self) -> None:
        """After a timeout or a bad reply: throw away what is buffered, then ``*OPC?`` each
        instrument and read until its ``1`` (a late reply to an earlier query comes
        before it, so it cannot be taken for a new one); the errors the failed attempt
        left in the queues are read and dropped."""
        for link in self._links.values():
            link.drain()
            link.write("*OPC?")
            for _ in range(MAX_ERRORS):
                if link.call("*OPC?", link.handle.read_raw).strip() == b"1":
                    break
            else:
                raise link.reply_error("*OPC?", "...", f"no 1 among {MAX_ERRORS} replies")
            link.drain()  # a second 1, when the 1 read was a late one
            self._read_errors(link)

    def _close(self) -> None:
        for link in self._links.values():
            try:
                link.handle.close()
            except Exception:  # noqa: BLE001 - closing a lost instrument may fail too
                pass
        # the ResourceManager is PyVISA's one per library, shared with other devices in
        # this process: it stays open
        self._links = {}


def open_visa(spec: str, *, rig: str | Path, resources: Mapping[str, str] | None = None,
              backend: str = "@py", retries: int = 1) -> VisaDevice:
    """Open ``visa:RESOURCE`` with the rig file ``rig`` (what ``phys.open`` calls).

    Args:
        spec: ``visa:RESOURCE`` (``visa:`` alone when the rig file names every resource).
        rig: The rig file (TOML); see ``examples/scpi_rig.toml``.
        resources, backend, retries: See :class:`VisaDevice`.

    Raises:
        RigError: the rig file does not check (naming file and line).
    """
    scheme, _, address = spec.partition(":")
    if scheme != "visa":
        raise ValueError(f"not a visa: address: {spec!r}")
    if not isinstance(rig, (str, Path)) or not str(rig):
        raise RigError(f"{spec}: give the rig file, e.g. rig='rig.toml', got {rig!r}")
    return VisaDevice(rig, address=address, resources=resources, backend=backend,
                      retries=retries)
