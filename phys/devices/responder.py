"""The device end of the wire protocol: frames in, frames out, measuring through a Device.

:class:`Responder` is what firmware does with each frame, written against the same
:mod:`phys.devices.protocol` functions as the host driver: it answers HELLO with INFO,
measures QUERY batches on a backend :class:`~phys.Device` (any simulator), applies SET to
its settings (a gain and an offset per output channel, then the backend's own physical
parameters, passed through to its ``set``), echoes PING, returns to the power-up state on
RESET, refuses bad input with the protocol's error codes, and
remembers its last answer so that a repeated request is answered without measuring
again. After power-up (or RESET) it answers everything but HELLO with ERROR 8
"restarted…", so a host notices a restart it did not ask for. It does no I/O and keeps
no time: :class:`phys.devices.emulator.Emulator` adds the link, the timing model and the
faults.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from phys.device import Device
from phys.devices import protocol as P

__all__ = ["Responder", "ResponderStats", "SETTING_LIMIT"]

#: Parameters of at most this many values report their power-up value in INFO.
MAX_REPORTED_VALUES = 1024
#: Settings (gain, offset) accept values in -SETTING_LIMIT .. SETTING_LIMIT.
SETTING_LIMIT = 100.0
#: Firmware version string the emulated device reports.
FIRMWARE = "physnn-emulator 1"
#: SET indexes of the host-side settings; the backend's parameters follow them.
HOST_SETTINGS = ("gain", "offset")


@dataclass
class ResponderStats:
    """Frames handled, samples actually measured, answers repeated from memory, and
    frames refused (``bad_frames``: COBS, CRC, version or length; ``errors``: any ERROR)."""

    frames: int = 0
    measured_samples: int = 0
    measurements: int = 0
    memory_answers: int = 0
    bad_frames: int = 0
    errors: int = 0
    power_ups: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _check_range(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be finite with low < high, got {value!r}")
    return lo, hi


class Responder:
    """Protocol logic of a lab device whose physics is ``device``.

    Args:
        device: The backend that measures (a simulator or any :class:`~phys.Device`).
        dtype: ``"f32"`` or ``"i16"`` values on the wire.
        max_batch: Largest batch one QUERY may carry (at most the backend's).
        max_frame: Largest body accepted, in bytes (default: room for ``max_batch`` rows
            each way, at least 256).
        out_range: ``(out_min, out_max)`` spanned by int16 outputs; needed with ``"i16"``
            (outputs outside it saturate, as an ADC does).
        sample_time: Seconds one sample takes to measure, reported in INFO.
        name: Device name in INFO (default ``"lab-" + backend name``).
        seed: Seeds the ``boot`` number INFO reports after each power-up.
        power_up_params: The backend's parameter values after power-up or RESET, by
            name (default: its values now, as handed over).
    """

    def __init__(self, device: Device, *, dtype: str = "f32", max_batch: int = 256,
                 max_frame: int | None = None, out_range: Any = None, sample_time: float = 0.0,
                 name: str | None = None, seed: int = 0,
                 power_up_params: dict[str, torch.Tensor] | None = None) -> None:
        if not isinstance(device, Device):
            raise ValueError(f"the emulated device needs a phys.Device backend, got "
                             f"{type(device).__name__}")
        if dtype not in P.DTYPES:
            raise ValueError(f"dtype must be 'f32' or 'i16', got {dtype!r}")
        if dtype == "i16" and out_range is None:
            raise ValueError("dtype 'i16' needs out_range=(out_min, out_max): the span the "
                             "int16 outputs cover")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
        info = device.info
        self.device, self.dtype = device, dtype
        self.n_in, self.n_out = info.n_in, info.n_out
        self.in_min, self.in_max = info.in_min, info.in_max
        self.out_range = _check_range("out_range", out_range) if out_range is not None else None
        size = 4 if dtype == "f32" else 2
        width = max(info.n_in, info.n_out)
        self.max_batch = min(max_batch, info.max_batch, (P.MAX_BODY - 12) // (width * size))
        if self.max_batch < 1:
            raise ValueError(f"rows of {width} values do not fit in one frame")
        #: The backend's parameter values at power-up.
        self.power_up_params = (_params_state(device) if power_up_params is None
                                else dict(power_up_params))
        self.params = self._settings(device, size)
        largest = max(p["size"] for p in self.params)
        need = max(P.MIN_MAX_FRAME, P.body_size(2 + self.max_batch * width * size),
                   P.body_size(2 + largest * size))
        self.max_frame = need if max_frame is None else int(max_frame)
        if not P.MIN_MAX_FRAME <= self.max_frame <= P.MAX_BODY:
            raise ValueError(f"max_frame must be in {P.MIN_MAX_FRAME}..{P.MAX_BODY}, got "
                             f"{max_frame}")
        self.sample_time = float(sample_time)
        self.name = name or f"lab-{info.name}"
        self.stats = ResponderStats()
        self._rng = random.Random(seed)
        self.power_up(restore=False)  # the backend is as handed over (maybe shared)

    def _settings(self, device: Device, size: int) -> list[dict[str, Any]]:
        """INFO's ``params``: gain and offset, then each parameter of a backend that can
        save and load them (``params_state``, ``load_params_state``) whose SET fits in
        one frame (its values flattened, row-major), with its units, shape and (up to
        :data:`MAX_REPORTED_VALUES` values) its power-up ``value``."""
        out: list[dict[str, Any]] = [
            {"index": i, "name": name, "size": self.n_out, "min": -SETTING_LIMIT,
             "max": SETTING_LIMIT, "units": "", "value": [float(1 - i)] * self.n_out}
            for i, name in enumerate(HOST_SETTINGS)]  # power-up: gain 1, offset 0
        for spec in device.info.params if _params_state(device) else ():
            count = math.prod(spec.shape)
            if (spec.name in HOST_SETTINGS or spec.min >= spec.max
                    or P.body_size(2 + count * size) > P.MAX_BODY):
                continue  # a name the host settings take, a fixed value, or too large
            entry = {"index": len(out), "name": spec.name, "size": count, "min": spec.min,
                     "max": spec.max, "units": spec.units, "shape": list(spec.shape)}
            if count <= MAX_REPORTED_VALUES and spec.name in self.power_up_params:
                entry["value"] = [float(v) for v in torch.as_tensor(
                    self.power_up_params[spec.name], dtype=torch.float32).flatten()]
            out.append(entry)
        return out

    # -- state ------------------------------------------------------------------------
    def power_up(self, restore: bool = True) -> None:
        """The state after power-up: unit gain, zero offset, no remembered answer, the
        backend's parameters at :attr:`power_up_params` (set on the backend now with
        ``restore``; else before this device's next measurement)."""
        self.gain = np.ones(self.n_out)
        self.offset = np.zeros(self.n_out)
        #: This device's values of the backend's parameters (the backend may serve
        #: other clients with theirs in between).
        self.param_values = dict(self.power_up_params)
        if restore:
            self._apply_params()
        self._last: tuple[int, bytes, list[bytes]] | None = None
        self.greeted = False  # until a HELLO, requests are answered ERROR 8 "restarted"
        self.boot = self._rng.randrange(1 << 31)
        self.stats.power_ups += 1

    def info(self) -> dict[str, Any]:
        """The INFO this device reports."""
        d: dict[str, Any] = {
            "protocol": P.PROTOCOL_VERSION, "name": self.name, "firmware": FIRMWARE,
            "n_in": self.n_in, "n_out": self.n_out, "in_min": self.in_min,
            "in_max": self.in_max, "dtype": self.dtype, "max_batch": self.max_batch,
            "max_frame": self.max_frame, "params": self.params, "boot": self.boot,
            "sample_time": self.sample_time, "stochastic": self.device.info.stochastic,
        }
        if self.out_range is not None:
            d["out_min"], d["out_max"] = self.out_range
        return d

    @property
    def frame_limit(self) -> int:
        """Longest COBS-encoded frame a receiver of ``max_frame`` bodies keeps."""
        return self.max_frame + self.max_frame // 254 + 1

    # -- frames -----------------------------------------------------------------------
    def handle(self, frame: bytes) -> tuple[list[bytes], int]:
        """Answer one frame (COBS bytes without the 0x00).

        Returns:
            The frames to send (each ending in 0x00) and the number of samples measured.
        """
        self.stats.frames += 1
        try:
            if len(frame) > self.frame_limit:
                raise P.FrameError(f"frame longer than max_frame={self.max_frame}")
            msg = P.decode_frame(frame)
            if P.body_size(len(msg.payload)) > self.max_frame:
                raise P.FrameError(f"body longer than max_frame={self.max_frame}", msg.seq)
        except P.FrameError as err:
            self.stats.bad_frames += 1
            if err.seq is None:
                return [], 0
            return [self._error(err.seq, P.BAD_FRAME, str(err))], 0
        last = self._last
        if last is not None and last[0] == msg.seq and last[1] == frame:
            self.stats.memory_answers += 1
            return list(last[2]), 0
        answers, rows = self._answer(msg)
        if msg.type == P.RESET:
            self.power_up()
        else:
            self._last = (msg.seq, bytes(frame), answers)
        return list(answers), rows

    def _error(self, seq: int, code: int, text: str) -> bytes:
        self.stats.errors += 1
        return P.encode_frame(P.ERROR, seq, P.error_payload(code, text[:200]))

    def _answer(self, msg: P.Message) -> tuple[list[bytes], int]:
        seq = msg.seq
        try:
            if msg.type == P.HELLO:
                self.greeted = True
                return [P.encode_frame(P.INFO, seq, P.info_payload(self.info()))], 0
            if not self.greeted:
                raise P.PayloadError(P.HARDWARE, f"{P.RESTARTED}: settings are at their "
                                                 f"power-up values; send HELLO")
            if msg.type == P.QUERY:
                return self._query(seq, msg.payload)
            if msg.type == P.SET:
                self._set(msg.payload)
                return [P.encode_frame(P.ACK_SET, seq)], 0
            if msg.type == P.PING:
                if len(msg.payload) > P.MAX_PING:
                    raise P.PayloadError(P.BAD_SIZE, f"PING of {len(msg.payload)} bytes "
                                                     f"exceeds {P.MAX_PING}")
                return [P.encode_frame(P.PONG, seq, msg.payload)], 0
            if msg.type == P.RESET:
                return [P.encode_frame(P.ACK_RESET, seq)], 0
            raise P.PayloadError(P.UNKNOWN_TYPE, f"unknown message type 0x{msg.type:02X}")
        except P.PayloadError as err:
            return [self._error(seq, err.code, str(err))], 0

    def _apply_params(self) -> None:
        """Put this device's parameter values on the backend, unless they are there."""
        if not self.param_values:
            return
        now = self.device.params_state()
        if any(not torch.equal(now[k], v) for k, v in self.param_values.items()):
            self.device.load_params_state(self.param_values)

    def _query(self, seq: int, payload: bytes) -> tuple[list[bytes], int]:
        if len(payload) >= 2:
            count = int.from_bytes(payload[:2], "little")
            if count > self.max_batch:
                raise P.PayloadError(P.BATCH_TOO_LARGE, f"batch of {count} exceeds "
                                                        f"max_batch={self.max_batch}")
        x = P.parse_query(payload, self.n_in, self.dtype, self.in_min, self.in_max)
        rows = x.shape[0]
        if rows:
            try:
                self._apply_params()
                y = self.device.query(torch.from_numpy(x.astype(np.float32))).numpy()
            except (RuntimeError, ValueError) as err:
                raise P.PayloadError(P.HARDWARE, f"measurement failed: {err}") from None
            y = y.astype(np.float64) * self.gain + self.offset
            self.stats.measurements += 1
            self.stats.measured_samples += rows
        else:
            y = np.zeros((0, self.n_out))
        lo, hi = self.out_range or (-1.0, 1.0)
        return [P.encode_frame(P.RESULT, seq, P.result_payload(y, self.dtype, lo, hi))], rows

    def _set(self, payload: bytes) -> None:
        index, data = P.parse_set(payload)
        size = 4 if self.dtype == "f32" else 2
        if index >= len(self.params) or len(data) != self.params[index]["size"] * size:
            raise P.PayloadError(P.BAD_SET, f"no setting with index {index} and "
                                            f"{len(data) // size} values")
        p = self.params[index]
        values = P.decode_values(data, self.dtype, p["min"], p["max"])
        bad = ~np.isfinite(values) | (values < p["min"]) | (values > p["max"])
        if bad.any():
            i = int(np.argmax(bad))
            raise P.PayloadError(P.OUT_OF_RANGE, f"setting {p['name']!r} value "
                                                 f"{float(values[i])!r} at [{i}] is outside "
                                                 f"[{p['min']}, {p['max']}]")
        if p["name"] == "gain":
            self.gain = values
        elif p["name"] == "offset":
            self.offset = values
        else:
            wanted = {**self.param_values, p["name"]: torch.from_numpy(values).reshape(
                p["shape"])}
            try:
                self.device.load_params_state(wanted)  # checks all, then sets
                self.param_values = self.device.params_state()
            except ValueError as err:
                raise P.PayloadError(P.OUT_OF_RANGE, str(err)) from None
            except RuntimeError as err:
                raise P.PayloadError(P.HARDWARE, f"SET {p['name']} failed: {err}") from None


def _params_state(device: Device) -> dict[str, torch.Tensor]:
    """The backend's parameter values, when it has parameters and can restore them."""
    state = getattr(device, "params_state", None)
    if not device.info.params or not callable(state) \
            or not callable(getattr(device, "load_params_state", None)):
        return {}
    return state()
