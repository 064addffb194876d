"""Fuzzing the decoders: random and mutated frames never crash and are never accepted
when corrupt."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import phys
from phys.devices import protocol as P
from phys.devices.responder import Responder

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

messages = st.builds(P.Message, st.integers(0, 255), st.integers(0, 0xFFFF),
                     st.binary(max_size=600))


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_decode_to_an_error_never_a_crash(data):
    try:
        msg = P.decode_frame(data)
    except P.FrameError:
        return
    # accepted only with a correct CRC, so it must re-encode to a valid frame
    assert P.decode_frame(P.encode_frame(msg.type, msg.seq, msg.payload)[:-1]) == msg


@FUZZ
@given(messages, st.data())
def test_a_mutated_frame_is_refused_or_unchanged(msg, data):
    wire = bytearray(P.encode_frame(msg.type, msg.seq, msg.payload)[:-1])
    kind = data.draw(st.sampled_from(["flip", "replace", "insert", "delete", "truncate"]))
    at = data.draw(st.integers(0, len(wire) - 1))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 3))):
            wire[data.draw(st.integers(0, len(wire) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "replace":
        wire[at] = data.draw(st.integers(0, 255).filter(lambda b: b != wire[at]))
    elif kind == "insert":
        wire.insert(at, data.draw(st.integers(1, 255)))
    elif kind == "delete":
        del wire[at]
    else:
        wire = wire[:at]
    try:
        got = P.decode_frame(bytes(wire))
    except P.FrameError:
        return
    assert got == msg  # only a mutation that changed nothing may pass


@FUZZ
@given(st.lists(st.tuples(st.binary(max_size=40), messages), max_size=6),
       st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_splitter_recovers_every_frame_from_any_chunking(items, cuts):
    # each frame follows garbage and a delimiter, as after a glitch on the line
    stream = b"".join(junk + b"\x00" + P.encode_frame(m.type, m.seq, m.payload)
                      for junk, m in items)
    splitter, frames, pos, k = P.FrameSplitter(), [], 0, 0
    while pos < len(stream):
        frames += splitter.feed(stream[pos:pos + cuts[k % len(cuts)]])
        pos, k = pos + cuts[k % len(cuts)], k + 1
    decoded = []
    for f in frames:
        try:
            decoded.append(P.decode_frame(f))
        except P.FrameError:
            pass
    assert decoded == [m for _, m in items]
    assert splitter.pending == 0


@FUZZ
@given(st.binary(max_size=300), st.integers(1, 8), st.sampled_from(P.DTYPES))
def test_payload_parsers_raise_payload_errors_only(data, width, dtype):
    for parse in (lambda: P.parse_result(data, width, dtype),
                  lambda: P.parse_query(data, width, dtype, -1.0, 1.0),
                  lambda: P.parse_info(data), lambda: P.parse_error(data),
                  lambda: P.parse_set(data)):
        try:
            parse()
        except P.PayloadError:
            pass


_DEVICE = Responder(phys.open("cavity", n_in=3, n_out=2), max_batch=4)
_DEVICE.greeted = True


@FUZZ
@given(st.one_of(st.binary(max_size=400),
                 st.builds(lambda t, s, p: P.encode_frame(t, s, p)[:-1],
                           st.sampled_from([1, 2, 3, 4, 5, 0x42, 0x82]),
                           st.integers(0, 0xFFFF), st.binary(max_size=80))))
def test_the_device_side_answers_anything_with_valid_frames(frame):
    answers, rows = _DEVICE.handle(frame)
    for answer in answers:
        assert answer.endswith(b"\x00") and answer.count(b"\x00") == 1
        msg = P.decode_frame(answer[:-1])
        assert msg.type in (P.INFO, P.RESULT, P.ACK_SET, P.PONG, P.ACK_RESET, P.ERROR)
    assert 0 <= rows <= 4
    _DEVICE.greeted = True  # a fuzzed RESET powers it up again


def test_fuzzed_device_still_measures_correctly():
    _DEVICE.power_up()
    _DEVICE.greeted = True
    x = [[0.1, -0.2, 0.3]]
    answers, rows = _DEVICE.handle(P.encode_frame(P.QUERY, 9999, P.query_payload(x, "f32", -1,
                                                                                  1))[:-1])
    y = P.parse_result(P.decode_frame(answers[0][:-1]).payload, 2, "f32")
    expect = phys.open("cavity", n_in=3, n_out=2).query(torch.tensor(x))
    assert rows == 1 and torch.equal(torch.tensor(y, dtype=torch.float32), expect)
