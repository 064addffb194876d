"""PHYS serial protocol, version 1: the device side, for MicroPython (and CPython).

This module is the whole protocol core of the firmware and touches no hardware: bytes
go in through ``Core.feed`` and frames to send come out. The board (what a sample
physically is) is a separate object with this interface:

    N_IN, N_OUT            input and output vector lengths
    IN_MIN, IN_MAX         accepted input range (volts at the actuators)
    OUT_MIN, OUT_MAX       span of the int16 outputs (volts at the detectors)
    SAMPLE_TIME            seconds one sample takes (settling and conversion)
    NAME                   device name reported in INFO
    PARAMS                 SET-able settings: [{"index", "name", "size", "min", "max"}]
    measure(inputs)        one sample: list of N_IN floats -> list of N_OUT floats
    set(index, values)     apply a setting
    power_up()             back to the power-up state

It sticks to what MicroPython provides (struct, json, bytearray; no numpy, no typing),
so the same file runs on the Pico and, under CPython, in the host's tests.
"""

import json
import struct

try:
    from binascii import crc32 as _builtin_crc32
except ImportError:  # a MicroPython build without binascii.crc32
    _builtin_crc32 = None

VERSION = 1
FIRMWARE = "physnn-pico 1"

HELLO, QUERY, SET, PING, RESET = 0x01, 0x02, 0x03, 0x04, 0x05
INFO, RESULT, ACK_SET, PONG, ACK_RESET, ERROR = 0x81, 0x82, 0x83, 0x84, 0x85, 0xFF

BAD_FRAME, UNKNOWN_TYPE, BAD_SIZE, OUT_OF_RANGE = 1, 2, 3, 4
BUSY, BATCH_TOO_LARGE, BAD_SET, HARDWARE = 5, 6, 7, 8

I16_MAX = 32767
MAX_PING = 64
_SIZES = {"i16": 2, "f32": 4}
_CODES = {"i16": "h", "f32": "f"}

_TABLE = None


def crc32_table():
    """The 256-entry table of the reflected IEEE 802.3 CRC-32 (polynomial 0xEDB88320)."""
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


def crc32_table_driven(data):
    """CRC-32 of ``data`` without binascii (same value as ``zlib.crc32``)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = crc32_table()
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc32(data):
    if _builtin_crc32 is not None:
        return _builtin_crc32(data) & 0xFFFFFFFF
    return crc32_table_driven(data)


def cobs_encode(data):
    """Consistent Overhead Byte Stuffing: ``data`` without any 0x00 (no delimiter)."""
    out = bytearray(b"\x00")
    code_at, code = 0, 1
    last = len(data) - 1
    for i, b in enumerate(data):
        if b == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        else:
            out.append(b)
            code += 1
            if code == 0xFF and i < last:  # a full block; a final one needs no successor
                out[code_at] = code
                code_at, code = len(out), 1
                out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data):
    """Inverse of :func:`cobs_encode`; ``ValueError`` on a malformed block."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ValueError("zero byte in COBS data")
        end = i + code
        if end > n:
            raise ValueError("COBS block runs past the end")
        block = data[i + 1:end]
        if block.find(b"\x00") >= 0:
            raise ValueError("zero byte in COBS data")
        out += block
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


def frame(msg_type, seq, payload=b""):
    """One frame to send: ``COBS(body) 0x00``."""
    head = struct.pack("<BBHH", VERSION, msg_type, seq, len(payload)) + payload
    return cobs_encode(head + struct.pack("<I", crc32(head))) + b"\x00"


def error_frame(seq, code, text):
    return frame(ERROR, seq, struct.pack("<H", code) + text.encode())


def _f32(value):
    return struct.unpack("<f", struct.pack("<f", value))[0]


def to_i16(value, lo, hi):
    """``lo .. hi`` to -32767 .. 32767 (clipped)."""
    value = min(max(value, lo), hi)
    return int(round((value - lo) / (hi - lo) * (2 * I16_MAX) - I16_MAX))


def from_i16(code, lo, hi):
    """-32767 .. 32767 to ``lo .. hi`` (-32768 maps below ``lo``)."""
    step = (hi - lo) / (2 * I16_MAX)
    if code < -I16_MAX:
        return lo - step
    return min(max(lo + (code + I16_MAX) * step, lo), hi)


class Core:
    """The device's protocol state machine.

    Args:
        board: The hardware (or its model); see the module docstring.
        max_batch: Most rows one QUERY may carry.
        max_frame: Largest body accepted, bytes (at least 256).
        boot: Boot number reported in INFO (bumped by every power-up).
        dtype: Values on the wire: ``"i16"`` (scaled over the board's ranges) or
            ``"f32"`` (volts as float32).
    """

    def __init__(self, board, max_batch=32, max_frame=1024, boot=0, dtype="i16"):
        if dtype not in _SIZES:
            raise ValueError("dtype must be 'i16' or 'f32', got %r" % (dtype,))
        self.board = board
        self.dtype = dtype
        self.size = _SIZES[dtype]
        self.max_batch = max_batch
        self.max_frame = max_frame
        self.limit = max_frame + max_frame // 254 + 1  # longest encoded frame kept
        self.boot = boot
        self.buf = bytearray()
        self.skipping = False
        self.last = None  # (seq, frame, answers) of the last request
        self.greeted = False  # until HELLO, other requests get ERROR 8 "restarted"
        self.measured = 0  # samples measured since start

    def power_up(self):
        self.board.power_up()
        self.last = None
        self.greeted = False
        self.boot = (self.boot + 1) & 0x7FFFFFFF

    def info(self):
        b = self.board
        return {
            "protocol": VERSION, "name": b.NAME, "firmware": FIRMWARE,
            "n_in": b.N_IN, "n_out": b.N_OUT, "in_min": b.IN_MIN, "in_max": b.IN_MAX,
            "out_min": b.OUT_MIN, "out_max": b.OUT_MAX, "dtype": self.dtype,
            "max_batch": self.max_batch, "max_frame": self.max_frame,
            "params": b.PARAMS, "sample_time": b.SAMPLE_TIME, "boot": self.boot,
            "stochastic": getattr(b, "STOCHASTIC", True),
        }

    def feed(self, data):
        """Bytes from the host; returns the frames to send, in order."""
        out = []
        for b in data:
            if b == 0:
                if self.buf and not self.skipping:
                    out.extend(self.handle(bytes(self.buf)))
                self.buf = bytearray()
                self.skipping = False
            elif not self.skipping:
                self.buf.append(b)
                if len(self.buf) > self.limit:
                    self.buf = bytearray()
                    self.skipping = True
        return out

    def handle(self, encoded):
        """Answer one frame (COBS bytes without the delimiter)."""
        try:
            body = cobs_decode(encoded)
        except ValueError:
            return []
        if len(body) < 10:
            return [error_frame(struct.unpack_from("<H", body, 2)[0], BAD_FRAME, "short")] \
                if len(body) >= 4 else []
        version, msg_type, seq, length = struct.unpack_from("<BBHH", body, 0)
        if len(body) != 10 + length or len(body) > self.max_frame:
            return [error_frame(seq, BAD_FRAME, "length")]
        if struct.unpack_from("<I", body, 6 + length)[0] != crc32(body[:6 + length]):
            return [error_frame(seq, BAD_FRAME, "crc")]
        if version != VERSION:
            return [error_frame(seq, BAD_FRAME, "version")]
        last = self.last
        if last is not None and last[0] == seq and last[1] == encoded:
            return last[2]  # a retry: answered from memory, nothing measured
        payload = body[6:6 + length]
        answers = self.answer(msg_type, seq, payload)
        if msg_type == RESET:
            self.power_up()
        else:
            self.last = (seq, encoded, answers)
        return answers

    def answer(self, msg_type, seq, payload):
        b = self.board
        if msg_type == HELLO:
            self.greeted = True
            return [frame(INFO, seq, json.dumps(self.info()).encode())]
        if not self.greeted:
            return [error_frame(seq, HARDWARE, "restarted: send HELLO")]
        if msg_type == PING:
            if len(payload) > MAX_PING:
                return [error_frame(seq, BAD_SIZE, "ping too long")]
            return [frame(PONG, seq, payload)]
        if msg_type == RESET:
            return [frame(ACK_RESET, seq)]
        if msg_type == SET:
            return [self.set(seq, payload)]
        if msg_type == QUERY:
            return [self.query(seq, payload)]
        return [error_frame(seq, UNKNOWN_TYPE, "type")]

    def set(self, seq, payload):
        if len(payload) < 2:
            return error_frame(seq, BAD_SIZE, "no index")
        index = struct.unpack_from("<H", payload, 0)[0]
        params = [p for p in self.board.PARAMS if p["index"] == index]
        if not params or len(payload) != 2 + self.size * params[0]["size"]:
            return error_frame(seq, BAD_SET, "index or size")
        p = params[0]
        values = self.decode(payload, 2, p["size"], p["min"], p["max"])
        if values is None:
            return error_frame(seq, OUT_OF_RANGE, p["name"])
        self.board.set(index, values)
        return frame(ACK_SET, seq)

    def decode(self, payload, offset, n, lo, hi):
        """``n`` wire values from ``payload[offset:]`` as floats in ``lo .. hi``;
        ``None`` when one lies outside (int16 -32768, or a float32 out of range or NaN)."""
        raw = struct.unpack_from("<%d%s" % (n, _CODES[self.dtype]), payload, offset)
        if self.dtype == "f32":
            lo, hi = _f32(lo), _f32(hi)  # the bounds as the host rounds them
            for v in raw:
                if not lo <= v <= hi:
                    return None
            return list(raw)
        if n and min(raw) < -I16_MAX:
            return None
        return [from_i16(c, lo, hi) for c in raw]

    def encode(self, values, lo, hi):
        """Values to send as wire bytes (int16 clipped to ``lo .. hi``)."""
        if self.dtype == "f32":
            return struct.pack("<%df" % len(values), *values)
        return struct.pack("<%dh" % len(values), *[to_i16(v, lo, hi) for v in values])

    def query(self, seq, payload):
        b = self.board
        if len(payload) < 2:
            return error_frame(seq, BAD_SIZE, "no count")
        count = struct.unpack_from("<H", payload, 0)[0]
        if count > self.max_batch:
            return error_frame(seq, BATCH_TOO_LARGE, "batch")
        if len(payload) != 2 + self.size * count * b.N_IN:
            return error_frame(seq, BAD_SIZE, "size")
        inputs = self.decode(payload, 2, count * b.N_IN, b.IN_MIN, b.IN_MAX)
        if inputs is None:
            return error_frame(seq, OUT_OF_RANGE, "input")
        out = [struct.pack("<H", count)]
        try:
            for r in range(count):
                y = b.measure(inputs[r * b.N_IN:(r + 1) * b.N_IN])
                out.append(self.encode(y, b.OUT_MIN, b.OUT_MAX))
                self.measured += 1
        except Exception as err:  # any board failure is reported, never fatal
            return error_frame(seq, HARDWARE, str(err))
        return frame(RESULT, seq, b"".join(out))


def serve(core, read, write):
    """Run ``core`` on a byte stream until ``read`` returns ``None`` (the line closed).

    ``read(n)`` returns up to ``n`` bytes (empty: nothing yet), ``write(frame)`` sends
    one frame.
    """
    while True:
        data = read(256)
        if data is None:
            return
        for out in core.feed(bytes(data)):
            write(out)
