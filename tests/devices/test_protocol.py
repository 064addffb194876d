"""Frames, payloads and INFO of the wire protocol, byte for byte."""

import json
import math

import numpy as np
import pytest
from serial_helpers import frame

from phys.devices import protocol as P

H = bytes.fromhex

# Each message type with its exact bytes on the wire (COBS(body) 0x00).
GOLDEN = [
    (P.HELLO, 1, b"", "04 01 01 01 01 01 05 d3 3c 42 ff 00"),
    (P.QUERY, 2, P.query_payload([[0.5, -0.25]], "f32", -1, 1),
     "04 01 02 02 02 0a 02 01 01 01 01 02 3f 01 07 80 be 30 05 e5 3a 00"),
    (P.QUERY, 2, P.query_payload([[0.5, -1.0], [1.0, 0.0]], "i16", -1, 1),
     "04 01 02 02 02 0a 02 02 01 06 40 01 80 ff 7f 01 05 76 a8 e0 5a 00"),
    (P.RESULT, 2, P.result_payload([[1.0, 2.0, -3.0]], "f32"),
     "04 01 82 02 02 0e 02 01 01 01 03 80 3f 01 01 02 40 01 07 40 c0 ca d1 2d 18 00"),
    (P.SET, 3, P.set_payload(0, [2.0], "f32", -10, 10),
     "04 01 03 03 02 06 01 01 01 01 01 06 40 15 1f 16 22 00"),
    (P.ACK_SET, 3, b"", "04 01 83 03 01 01 05 aa 17 6d 9e 00"),
    (P.PING, 4, b"hi", "04 01 04 04 02 02 07 68 69 2a 49 15 f5 00"),
    (P.PONG, 4, b"hi", "04 01 84 04 02 02 07 68 69 d8 a3 03 7d 00"),
    (P.RESET, 5, b"", "04 01 05 05 01 01 05 44 0d a0 85 00"),
    (P.ACK_RESET, 5, b"", "04 01 85 05 01 01 05 d6 bd 46 34 00"),
    (P.ERROR, 6, P.error_payload(P.OUT_OF_RANGE, "range"),
     "04 01 ff 06 02 07 02 04 0a 72 61 6e 67 65 af c0 c5 c9 00"),
]


@pytest.mark.parametrize("msg_type,seq,payload,wire", GOLDEN,
                         ids=[f"{P.TYPE_NAMES[g[0]]}-{g[1]}" for g in GOLDEN])
def test_every_message_type_byte_exact(msg_type, seq, payload, wire):
    assert P.encode_frame(msg_type, seq, payload) == H(wire)
    assert frame(msg_type, seq, payload) == H(wire)  # built from the spec alone
    assert P.decode_frame(H(wire)[:-1]) == P.Message(msg_type, seq, payload)


def test_payload_layouts():
    # QUERY: u16 B, then B x n_in float32 little-endian
    assert P.query_payload([[0.5, -0.25]], "f32", -1, 1) == H("0100 0000003f 000080be")
    # int16: -32767 .. 32767 spans in_min .. in_max
    assert P.query_payload([[0.0, 4.0], [2.0, 1.0]], "i16", 0, 4) == H("0200 0180 ff7f 0000 "
                                                                       "00c0")
    assert P.error_payload(8, "ADC stuck") == b"\x08\x00ADC stuck"
    assert P.parse_error(b"\x05\x00busy") == (5, "busy")
    assert P.set_payload(1, [1.0, -1.0], "i16", -1, 1) == H("0100 ff7f 0180")


def test_i16_round_trip_and_edges():
    values = np.linspace(-2, 6, 17)
    back = P.decode_values(P.encode_values(values, "i16", -2, 6), "i16", -2, 6)
    assert np.abs(back - values).max() <= 8 / 65534 / 2 + 1e-12
    assert back.min() == -2 and back.max() == 6  # ends decode exactly, never past them
    assert P.decode_values(b"\x00\x80", "i16", -1, 1)[0] < -1  # -32768 is outside the span


def test_parse_query_checks_count_size_and_range():
    ok = P.query_payload([[0.5, 1.0]], "f32", -1, 1)
    assert P.parse_query(ok, 2, "f32", -1, 1).tolist() == [[0.5, 1.0]]
    with pytest.raises(P.PayloadError) as err:
        P.parse_query(ok[:-1], 2, "f32", -1, 1)
    assert err.value.code == P.BAD_SIZE
    with pytest.raises(P.PayloadError) as err:
        P.parse_query(P.query_payload([[0.5, 1.5]], "f32", -1, 2), 2, "f32", -1, 1)
    assert err.value.code == P.OUT_OF_RANGE and "row 0, column 1" in str(err.value)
    with pytest.raises(P.PayloadError):
        P.parse_query(P.query_payload([[math.nan, 0]], "f32", -1, 1), 2, "f32", -1, 1)
    # a float32 bound that is not exact in binary: the host's float32 value is accepted
    edge = P.query_payload([[0.1, 0.1]], "f32", 0, 0.1)
    assert P.parse_query(edge, 2, "f32", 0.0, 0.1).shape == (1, 2)


def test_parse_result_refuses_nan_and_wrong_count():
    with pytest.raises(P.PayloadError, match="nan"):
        P.parse_result(P.result_payload([[0.0, math.nan]], "f32"), 2, "f32")
    with pytest.raises(P.PayloadError, match="says 2 rows"):
        P.parse_result(b"\x02\x00" + b"\x00" * 8, 2, "f32")


def test_decode_refuses_bad_crc_version_length():
    good = P.encode_body(P.PING, 9, b"abc")
    with pytest.raises(P.FrameError, match="CRC") as err:
        P.decode_body(good[:-1] + bytes([good[-1] ^ 1]))
    assert err.value.seq == 9  # readable, so a device can answer ERROR 1
    with pytest.raises(P.FrameError, match="length"):
        P.decode_body(good[:6] + b"x" + good[6:])
    with pytest.raises(P.FrameError, match="version"):
        P.decode_frame(frame(P.PING, 9, b"abc", version=2)[:-1])
    with pytest.raises(P.FrameError, match="shorter"):
        P.decode_body(b"\x01\x04")
    with pytest.raises(P.FrameError, match="COBS"):
        P.decode_frame(b"\x05\x01")
    with pytest.raises(P.FrameError, match="exceeds"):
        P.decode_frame(b"\x01" * (P.MAX_ENCODED + 1))


def test_splitter_resynchronises_and_bounds_memory():
    s = P.FrameSplitter(limit=8)
    assert s.feed(b"\x00\x00ab") == [] and s.pending == 2
    assert s.feed(b"c\x00" + b"x" * 20) == [b"abc"]
    assert s.pending == 0 and s.overflows == 1  # an overlong frame is never buffered
    assert s.feed(b"yyy\x00ok\x00") == [b"ok"]


def info_bytes(**changes):
    d = {"protocol": 1, "name": "rig", "firmware": "1", "n_in": 2, "n_out": 3, "in_min": 0,
         "in_max": 1, "dtype": "f32", "max_batch": 4, "max_frame": 256, "extra_key": [1]}
    d.update(changes)
    return json.dumps({k: v for k, v in d.items() if v is not None}).encode()


def test_parse_info_accepts_unknown_keys_and_checks_the_rest():
    assert P.parse_info(info_bytes())["extra_key"] == [1]
    assert P.parse_info(info_bytes(protocol=2, n_in="x"))["protocol"] == 2  # caller refuses
    bad = [dict(n_in=0), dict(max_frame=100), dict(dtype="f64"), dict(in_min=1),
           dict(name=None), dict(dtype="i16"), dict(max_batch=True),
           dict(params=[{"index": 0, "name": "g", "size": 0, "min": 0, "max": 1}])]
    for change in bad:
        with pytest.raises(P.PayloadError):
            P.parse_info(info_bytes(**change))
    with pytest.raises(P.PayloadError, match="JSON"):
        P.parse_info(b"\xff{")
    assert P.parse_info(info_bytes(dtype="i16", out_min=0, out_max=5))["out_max"] == 5


def test_rows_per_frame_keeps_bodies_within_max_frame():
    rows = P.rows_per_frame(256, 3, "f32")
    assert P.body_size(2 + rows * 12) <= 256 < P.body_size(2 + (rows + 1) * 12)


def test_encode_refuses_out_of_range_fields():
    for bad in [dict(msg_type=256, seq=0), dict(msg_type=1, seq=70000)]:
        with pytest.raises(ValueError):
            P.encode_body(**bad)
    with pytest.raises(ValueError, match="dtype"):
        P.encode_values([1.0], "f16")
