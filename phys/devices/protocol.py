"""The serial wire protocol, version 1: frames, messages and payloads as pure functions.

A frame on the wire is ``COBS(body) 0x00``; ``body`` is a 6-byte little-endian header
(``version``, ``type``, ``seq``, ``length``), ``length`` payload bytes and the CRC-32
(``zlib.crc32``) of header and payload. Nothing here reads or writes a port: the host
driver (:mod:`phys.devices.serial`) and the virtual lab device
(:mod:`phys.devices.emulator`) both build on these functions, so the two sides cannot
disagree about a byte.

Examples::

    >>> frame = encode_frame(PING, 7, b"hi")
    >>> frame
    b'\\x04\\x01\\x04\\x07\\x02\\x02\\x07hi\\x84;\\x81s\\x00'
    >>> decode_frame(frame[:-1])
    Message(type=4, seq=7, payload=b'hi')
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from cobs import cobs

__all__ = [
    "ACK_RESET", "ACK_SET", "BAD_FRAME", "BAD_SET", "BAD_SIZE", "BATCH_TOO_LARGE", "BUSY",
    "DTYPES", "ERROR", "ERROR_NAMES", "FrameError", "FrameSplitter", "HARDWARE", "HEADER",
    "HELLO", "INFO", "I16_MAX", "MAX_BODY", "MAX_ENCODED", "MAX_PING", "MIN_MAX_FRAME",
    "Message", "OUT_OF_RANGE", "PING", "PONG", "PROTOCOL_VERSION", "PayloadError", "QUERY",
    "RESET", "RESTARTED", "RESULT", "SET", "TYPE_NAMES", "UNKNOWN_TYPE", "body_size", "decode_body",
    "decode_frame", "decode_values", "encode_body", "encode_frame", "encode_values",
    "error_payload", "info_payload", "parse_error", "parse_info", "parse_query",
    "parse_result", "parse_set", "query_payload", "result_payload", "rows_per_frame",
    "set_payload",
]

PROTOCOL_VERSION = 1

# message types -------------------------------------------------------------------------
HELLO, QUERY, SET, PING, RESET = 0x01, 0x02, 0x03, 0x04, 0x05
INFO, RESULT, ACK_SET, PONG, ACK_RESET = 0x81, 0x82, 0x83, 0x84, 0x85
ERROR = 0xFF
TYPE_NAMES: dict[int, str] = {
    HELLO: "HELLO", QUERY: "QUERY", SET: "SET", PING: "PING", RESET: "RESET",
    INFO: "INFO", RESULT: "RESULT", ACK_SET: "ACK", PONG: "PONG", ACK_RESET: "ACK",
    ERROR: "ERROR",
}

# error codes ---------------------------------------------------------------------------
BAD_FRAME, UNKNOWN_TYPE, BAD_SIZE, OUT_OF_RANGE = 1, 2, 3, 4
BUSY, BATCH_TOO_LARGE, BAD_SET, HARDWARE = 5, 6, 7, 8
ERROR_NAMES: dict[int, str] = {
    BAD_FRAME: "bad frame", UNKNOWN_TYPE: "unknown message type",
    BAD_SIZE: "payload size does not match its count", OUT_OF_RANGE: "input out of range",
    BUSY: "busy", BATCH_TOO_LARGE: "batch larger than max_batch",
    BAD_SET: "SET index or size not known", HARDWARE: "hardware fault",
}

#: Header layout: version, type, seq, payload length.
HEADER = struct.Struct("<BBHH")
_CRC = struct.Struct("<I")
_U16 = struct.Struct("<H")
#: Largest body the header can describe (``length`` is a uint16).
MAX_BODY = HEADER.size + 0xFFFF + _CRC.size
#: Largest COBS-encoded body: a receiver drops anything longer without reading on.
MAX_ENCODED = MAX_BODY + MAX_BODY // 254 + 1
#: Every device accepts bodies of at least this many bytes.
MIN_MAX_FRAME = 256
#: Longest PING payload.
MAX_PING = 64
#: Text that starts the ERROR 8 a device answers, after power-up or RESET, to any request
#: before the host's HELLO: the host then greets it again and restores its settings.
RESTARTED = "restarted"
DTYPES = ("f32", "i16")
#: int16 full scale: -I16_MAX .. I16_MAX spans the value range.
I16_MAX = 32767
_VALUE_SIZE = {"f32": 4, "i16": 2}
_NUMPY = {"f32": np.dtype("<f4"), "i16": np.dtype("<i2")}


class FrameError(ValueError):
    """A frame that must be dropped: bad COBS, CRC, version or length.

    ``seq`` is the sequence number read from the header when there was one to read
    (a device answers ERROR 1 to it), else ``None``.
    """

    def __init__(self, reason: str, seq: int | None = None,
                 version: int | None = None) -> None:
        super().__init__(reason)
        self.seq = seq
        #: set when the frame is sound (CRC correct) but of another protocol version
        self.version = version


class PayloadError(ValueError):
    """A well-framed message whose payload breaks its type's rules; ``code`` is the
    protocol error code a device answers with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True)
class Message:
    """One decoded frame: message ``type``, ``seq`` and raw ``payload`` bytes."""

    type: int
    seq: int
    payload: bytes = b""

    @property
    def name(self) -> str:
        return TYPE_NAMES.get(self.type, f"0x{self.type:02X}")


# --- framing --------------------------------------------------------------------------------

def encode_body(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    """Header + payload + CRC-32 (not yet COBS-encoded).

    Raises:
        ValueError: type, seq or payload length out of range.
    """
    if not 0 <= msg_type <= 0xFF:
        raise ValueError(f"message type must be 0..255, got {msg_type}")
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"seq must be 0..65535, got {seq}")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes exceeds 65535")
    head = HEADER.pack(PROTOCOL_VERSION, msg_type, seq, len(payload)) + bytes(payload)
    return head + _CRC.pack(zlib.crc32(head))


def encode_frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    """The bytes to write: ``COBS(body) 0x00``."""
    return cobs.encode(encode_body(msg_type, seq, payload)) + b"\x00"


def body_size(payload_len: int) -> int:
    """Body bytes of a message with ``payload_len`` payload bytes."""
    return HEADER.size + payload_len + _CRC.size


def decode_body(body: bytes) -> Message:
    """Check and split a body. Raises :class:`FrameError` for a bad CRC, version or length."""
    seq = _U16.unpack_from(body, 2)[0] if len(body) >= 4 else None
    if len(body) < HEADER.size + _CRC.size:
        raise FrameError(f"frame of {len(body)} bytes is shorter than header and CRC", seq)
    version, msg_type, seq, length = HEADER.unpack_from(body)
    if len(body) != HEADER.size + length + _CRC.size:
        raise FrameError(f"length field says {length} payload bytes, frame has "
                         f"{len(body) - HEADER.size - _CRC.size}", seq)
    (crc,) = _CRC.unpack_from(body, HEADER.size + length)
    if crc != zlib.crc32(body[:HEADER.size + length]):
        raise FrameError("CRC mismatch", seq)
    if version != PROTOCOL_VERSION:
        raise FrameError(f"protocol version {version}, expected {PROTOCOL_VERSION}", seq,
                         version)
    return Message(msg_type, seq, bytes(body[HEADER.size:HEADER.size + length]))


def decode_frame(frame: bytes) -> Message:
    """Decode one frame without its trailing 0x00. Raises :class:`FrameError`."""
    if len(frame) > MAX_ENCODED:
        raise FrameError(f"frame of {len(frame)} bytes exceeds {MAX_ENCODED}")
    try:
        body = cobs.decode(frame)
    except cobs.DecodeError as err:
        raise FrameError(f"bad COBS encoding: {err}") from None
    return decode_body(body)


class FrameSplitter:
    """Cuts a byte stream into frames at each 0x00, with bounded memory.

    Bytes beyond ``limit`` without a delimiter are thrown away up to the next 0x00 and
    counted in :attr:`overflows`; empty frames (two 0x00 in a row) are skipped.

    Examples::

        >>> s = FrameSplitter()
        >>> s.feed(b"ab\\x00\\x00c")
        [b'ab']
        >>> s.feed(b"d\\x00")
        [b'cd']
    """

    def __init__(self, limit: int = MAX_ENCODED) -> None:
        self.limit = limit
        self.overflows = 0
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        pieces = bytes(data).split(b"\x00")
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if not self._skipping:
                self._buf += piece
                if len(self._buf) > self.limit:
                    self._buf.clear()
                    self._skipping = True
                    self.overflows += 1
            if last:
                break
            if not self._skipping and self._buf:
                frames.append(bytes(self._buf))
            self._buf.clear()
            self._skipping = False
        return frames

    def clear(self) -> None:
        """Forget a partial frame."""
        self._buf.clear()
        self._skipping = False

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held."""
        return len(self._buf)


# --- values ---------------------------------------------------------------------------------

def _check_dtype(dtype: str) -> int:
    if dtype not in _VALUE_SIZE:
        raise ValueError(f"dtype must be 'f32' or 'i16', got {dtype!r}")
    return _VALUE_SIZE[dtype]


def encode_values(values: Any, dtype: str, lo: float = -1.0, hi: float = 1.0) -> bytes:
    """Values as little-endian float32, or int16 scaled so -32767 .. 32767 spans
    ``lo .. hi`` (values are clipped to that span first)."""
    _check_dtype(dtype)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if dtype == "f32":
        return v.astype(_NUMPY["f32"]).tobytes()
    unit = (np.clip(v, lo, hi) - lo) / (hi - lo)
    return np.rint(unit * (2 * I16_MAX) - I16_MAX).astype(_NUMPY["i16"]).tobytes()


def decode_values(data: bytes, dtype: str, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """Inverse of :func:`encode_values`: a float64 array (int16 -32768 decodes below ``lo``)."""
    size = _check_dtype(dtype)
    if len(data) % size:
        raise PayloadError(BAD_SIZE, f"{len(data)} value bytes is not a multiple of {size}")
    raw = np.frombuffer(data, dtype=_NUMPY[dtype])
    if dtype == "f32":
        return raw.astype(np.float64)
    step = (hi - lo) / (2 * I16_MAX)
    v = np.clip(lo + (raw.astype(np.float64) + I16_MAX) * step, lo, hi)
    return np.where(raw == -I16_MAX - 1, lo - step, v)  # -32768 lies outside the span


def rows_per_frame(max_frame: int, width: int, dtype: str) -> int:
    """Most rows of ``width`` values a QUERY or RESULT body of ``max_frame`` bytes holds."""
    size = _check_dtype(dtype)
    return max(0, (max_frame - body_size(_U16.size)) // (width * size))


def query_payload(rows: Any, dtype: str, in_min: float, in_max: float) -> bytes:
    """QUERY payload: ``u16 B`` then ``B x n_in`` values (rows of a 2-D array)."""
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] > 0xFFFF:
        raise ValueError(f"query rows must be a 2-D array of at most 65535 rows, got "
                         f"shape {x.shape}")
    return _U16.pack(x.shape[0]) + encode_values(x, dtype, in_min, in_max)


def _counted(payload: bytes, width: int, dtype: str, lo: float, hi: float,
             what: str) -> np.ndarray:
    if len(payload) < 2:
        raise PayloadError(BAD_SIZE, f"{what} payload of {len(payload)} bytes has no count")
    (count,) = _U16.unpack_from(payload)
    expect = count * width * _check_dtype(dtype)
    if len(payload) - 2 != expect:
        raise PayloadError(BAD_SIZE, f"{what} says {count} rows of {width} {dtype} values "
                                     f"({expect} bytes) but carries {len(payload) - 2} bytes")
    return decode_values(payload[2:], dtype, lo, hi).reshape(count, width)


def parse_query(payload: bytes, n_in: int, dtype: str, in_min: float,
                in_max: float) -> np.ndarray:
    """Rows ``(B, n_in)`` of a QUERY; :class:`PayloadError` (code 3) on a size mismatch,
    (code 4) on a value outside ``in_min .. in_max`` or not finite."""
    x = _counted(payload, n_in, dtype, in_min, in_max, "QUERY")
    if x.size:
        # float32 values are compared with float32 bounds, as the host checked them
        lo, hi = (np.float32(in_min), np.float32(in_max)) if dtype == "f32" else (in_min, in_max)
        outside = ~np.isfinite(x) | (x < lo) | (x > hi)
        if outside.any():
            r, c = np.argwhere(outside)[0]
            raise PayloadError(OUT_OF_RANGE, f"value {x[r, c]!r} at row {r}, column {c} is "
                                             f"outside [{in_min}, {in_max}]")
    return x


def result_payload(rows: Any, dtype: str, out_min: float = -1.0, out_max: float = 1.0) -> bytes:
    """RESULT payload: ``u16 B`` then ``B x n_out`` values."""
    return query_payload(rows, dtype, out_min, out_max)


def parse_result(payload: bytes, n_out: int, dtype: str, out_min: float = -1.0,
                 out_max: float = 1.0) -> np.ndarray:
    """Rows ``(B, n_out)`` of a RESULT; :class:`PayloadError` on a size mismatch or a
    value that is not finite."""
    y = _counted(payload, n_out, dtype, out_min, out_max, "RESULT")
    if y.size and not np.isfinite(y).all():
        r, c = np.argwhere(~np.isfinite(y))[0]
        raise PayloadError(HARDWARE, f"RESULT has {y[r, c]!r} at row {r}, column {c}")
    return y


def set_payload(index: int, values: Iterable[float], dtype: str, lo: float = -1.0,
                hi: float = 1.0) -> bytes:
    """SET payload: ``u16 index`` then the values (int16 scaled over the setting's
    ``lo .. hi`` when ``dtype`` is ``"i16"``)."""
    if not 0 <= index <= 0xFFFF:
        raise ValueError(f"SET index must be 0..65535, got {index}")
    return _U16.pack(index) + encode_values(list(values), dtype, lo, hi)


def parse_set(payload: bytes) -> tuple[int, bytes]:
    """``(index, value bytes)`` of a SET; the values decode with the setting's range."""
    if len(payload) < 2:
        raise PayloadError(BAD_SIZE, f"SET payload of {len(payload)} bytes has no index")
    return _U16.unpack_from(payload)[0], bytes(payload[2:])


def error_payload(code: int, text: str = "") -> bytes:
    """ERROR payload: ``u16 code`` then UTF-8 text."""
    return _U16.pack(code) + text.encode("utf-8")


def parse_error(payload: bytes) -> tuple[int, str]:
    """``(code, text)`` of an ERROR (text decoded leniently: it comes from the device)."""
    if len(payload) < 2:
        raise PayloadError(BAD_SIZE, f"ERROR payload of {len(payload)} bytes has no code")
    return _U16.unpack_from(payload)[0], payload[2:].decode("utf-8", "replace")


# --- INFO -----------------------------------------------------------------------------------

_INT_KEYS = ("n_in", "n_out", "max_batch", "max_frame")
_REQUIRED = ("protocol", "name", "firmware", *_INT_KEYS, "in_min", "in_max", "dtype")


def info_payload(info: Mapping[str, Any]) -> bytes:
    """INFO payload: compact UTF-8 JSON."""
    return json.dumps(dict(info), separators=(",", ":"), allow_nan=False).encode("utf-8")


def _number(info: Mapping[str, Any], key: str) -> float:
    value = info.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PayloadError(BAD_SIZE, f"INFO {key!r} must be a finite number, got {value!r}")
    return float(value)


def parse_info(payload: bytes) -> dict[str, Any]:
    """Decode and check an INFO payload.

    The ``protocol`` value is returned as found (the caller refuses other versions with
    its own message); everything else the host relies on is checked here.

    Raises:
        PayloadError: not JSON, a required key missing or of the wrong kind, sizes that
            are not positive, ``in_min >= in_max``, ``max_frame`` below 256, or ``i16``
            without ``out_min`` / ``out_max``.
    """
    try:
        info = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise PayloadError(BAD_SIZE, f"INFO is not UTF-8 JSON: {err}") from None
    if not isinstance(info, dict):
        raise PayloadError(BAD_SIZE, f"INFO must be a JSON object, got {type(info).__name__}")
    missing = [k for k in _REQUIRED if k not in info]
    if missing:
        raise PayloadError(BAD_SIZE, f"INFO lacks {', '.join(missing)}")
    if info["protocol"] != PROTOCOL_VERSION:
        return info
    for key in _INT_KEYS:
        value = info[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PayloadError(BAD_SIZE, f"INFO {key!r} must be a positive int, got {value!r}")
    if info["max_frame"] < MIN_MAX_FRAME:
        raise PayloadError(BAD_SIZE, f"INFO max_frame={info['max_frame']} is below "
                                     f"{MIN_MAX_FRAME}")
    if info["dtype"] not in DTYPES:
        raise PayloadError(BAD_SIZE, f"INFO dtype must be 'f32' or 'i16', got "
                                     f"{info['dtype']!r}")
    for lo, hi in (("in_min", "in_max"), ("out_min", "out_max")):
        if lo == "out_min" and info["dtype"] != "i16" and lo not in info:
            continue
        if _number(info, lo) >= _number(info, hi):
            raise PayloadError(BAD_SIZE, f"INFO needs {lo} < {hi}, got {info[lo]!r}, "
                                         f"{info[hi]!r}")
    for key in ("name", "firmware"):
        if not isinstance(info[key], str):
            raise PayloadError(BAD_SIZE, f"INFO {key!r} must be a string")
    params = info.get("params", [])
    if not isinstance(params, list) or not all(_param_ok(p) for p in params):
        raise PayloadError(BAD_SIZE, "INFO 'params' must be a list of {index, name, size, "
                                     "min, max}")
    return info


def _param_ok(p: Any) -> bool:
    if not isinstance(p, dict):
        return False
    try:
        ints = all(isinstance(p[k], int) and not isinstance(p[k], bool) and p[k] >= 0
                   for k in ("index", "size"))
        return (ints and p["size"] >= 1 and isinstance(p["name"], str)
                and _number(p, "min") < _number(p, "max"))
    except (KeyError, PayloadError):
        return False
