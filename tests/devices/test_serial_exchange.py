"""SerialDevice against a scripted device on a real pty: every byte each way is fixed."""

import struct
import time

import numpy as np
import pytest
import torch
from serial_helpers import ScriptedPeer, expected_protocol, frame, hello, info

from phys.devices import protocol as P
from phys.devices.serial import SerialDevice, SerialDeviceError, SerialTimeout


def f32(*rows):
    return struct.pack("<H", len(rows)) + np.asarray(rows, "<f4").tobytes()


def test_hello_gives_info():
    with expected_protocol([hello(name="rig-7", firmware="2.1")]) as dev:
        assert dev.info.name == "rig-7" and dev.info.extra["firmware"] == "2.1"
        assert (dev.info.n_in, dev.info.n_out, dev.info.max_batch) == (2, 3, 8)
        assert dev.info.in_min == -1.0 and not dev.info.stochastic


def test_query_f32():
    script = [hello(),
              (frame(P.QUERY, 2, f32([0.5, -0.25])), frame(P.RESULT, 2, f32([1, 2, 3])))]
    with expected_protocol(script) as dev:
        assert dev.query(torch.tensor([0.5, -0.25])).tolist() == [1.0, 2.0, 3.0]


def test_query_i16_scales_both_ways():
    i16 = dict(dtype="i16", in_min=0.0, in_max=4.0, out_min=-1.0, out_max=1.0)
    query = struct.pack("<Hhh", 1, -32767, 32767)
    result = struct.pack("<Hhhh", 1, -32767, 0, 32767)
    script = [hello(**i16), (frame(P.QUERY, 2, query), frame(P.RESULT, 2, result))]
    with expected_protocol(script) as dev:
        assert dev.query(torch.tensor([[0.0, 4.0]])).tolist() == [[-1.0, 0.0, 1.0]]


def test_batch_split_by_max_frame_and_max_batch():
    # max_frame 256 holds (256 - 12) // 12 = 20 rows of 3 float32 outputs; max_batch 8 wins
    rows = [[0.1 * i, -0.1 * i] for i in range(10)]
    outs = [[i, i, i] for i in range(10)]
    script = [hello(),
              (frame(P.QUERY, 2, f32(*rows[:8])), frame(P.RESULT, 2, f32(*outs[:8]))),
              (frame(P.QUERY, 3, f32(*rows[8:])), frame(P.RESULT, 3, f32(*outs[8:])))]
    with expected_protocol(script) as dev:
        y = dev.query(torch.tensor(rows))
        assert y[:, 0].tolist() == list(range(10)) and dev.stats.queries == 2
    script = [hello(max_batch=100, max_frame=256, n_in=30)]
    with expected_protocol(script) as dev:
        assert dev.info.max_batch == (256 - 12) // (30 * 4)  # the QUERY body is the limit


def test_set_ping_reset():
    params = [{"index": 3, "name": "bias", "size": 2, "min": -5, "max": 5}]
    script = [
        hello(params=params),
        (frame(P.SET, 2, b"\x03\x00" + np.asarray([1.5, -5], "<f4").tobytes()),
         frame(P.ACK_SET, 2)),
        (frame(P.PING, 3, b"abc"), frame(P.PONG, 3, b"abc")),
        (frame(P.RESET, 4), frame(P.ACK_RESET, 4)),
        (frame(P.HELLO, 5), frame(P.INFO, 5, info(params=params))),  # greeted again
    ]
    with expected_protocol(script) as dev:
        assert dev.params["bias"]["size"] == 2
        dev.set("bias", [1.5, -5])
        assert dev.ping(b"abc") >= 0
        dev.reset()
        with pytest.raises(ValueError, match="outside"):
            dev.set("bias", [0, 6])
        with pytest.raises(ValueError, match="takes 2 values"):
            dev.set("bias", [0])
        with pytest.raises(ValueError, match="no setting 'gain'"):
            dev.set("gain", [1, 1])
        with pytest.raises(ValueError, match="64"):
            dev.ping(b"x" * 65)


def test_out_of_range_input_never_reaches_the_device():
    with expected_protocol([hello()]) as dev:
        with pytest.raises(ValueError, match="outside"):
            dev.query(torch.tensor([[0.0, 1.5]]))
        assert dev.link.requests == 1  # only HELLO went out


def test_device_error_names_port_type_and_seq():
    answer = frame(P.ERROR, 2, P.error_payload(P.HARDWARE, "ADC stuck"))
    script = [hello(), (frame(P.QUERY, 2, f32([0, 0])), answer)]
    with expected_protocol(script) as dev:
        with pytest.raises(SerialDeviceError) as err:
            dev.query(torch.zeros(2))
        message = str(err.value)
        assert dev.port_name in message and "QUERY seq=2" in message and "ADC stuck" in message


def test_silence_resends_the_same_frame_then_raises():
    q = frame(P.QUERY, 2, f32([0, 0]))
    script = [hello(), (q, None), (q, None), (q, None)]
    with expected_protocol(script, retries=2, latency=0.05) as dev:
        t0 = time.monotonic()
        with pytest.raises(SerialTimeout, match=r"QUERY seq=2 after 3 tries"):
            dev.query(torch.zeros(2))
        assert time.monotonic() - t0 < 3 * dev._timeout(len(q), 38, 1) + 1.0
        assert dev.link.resends == 2 and dev.link.timeouts == 3


def test_late_and_corrupt_answers_are_dropped():
    q = frame(P.QUERY, 3, f32([0, 0]))
    good = frame(P.RESULT, 3, f32([7, 8, 9]))
    stale = frame(P.RESULT, 2, f32([0, 0, 0]))  # the late answer to the request before
    bad = bytearray(good)
    bad[5] ^= 0x10
    script = [hello(),
              (frame(P.PING, 2), None),  # no answer in time ...
              (frame(P.PING, 2), frame(P.PONG, 2)),  # ... then the retry is answered
              (q, stale + bytes(bad) + frame(P.PONG, 2)), (q, good)]
    with expected_protocol(script, latency=0.1) as dev:
        dev.ping()
        assert dev.query(torch.zeros(2)).tolist() == [7.0, 8.0, 9.0]
        assert dev.link.stale == 2 and dev.link.bad_frames == 1 and dev.link.resends == 2


def test_error_1_resends_at_once_and_busy_waits():
    q = frame(P.QUERY, 2, f32([0, 0]))
    script = [hello(),
              (q, frame(P.ERROR, 2, P.error_payload(P.BAD_FRAME, "crc"))),
              (q, frame(P.ERROR, 2, P.error_payload(P.BUSY, "busy")) + frame(P.RESULT, 2,
                                                                              f32([1, 1, 1])))]
    with expected_protocol(script) as dev:
        assert dev.query(torch.zeros(2)).tolist() == [1.0, 1.0, 1.0]
        assert dev.link.device_errors == 1 and dev.link.busy == 1 and dev.link.timeouts == 0


@pytest.mark.parametrize("answer,message", [
    (frame(P.RESULT, 2, f32([1, float("nan"), 3])), "nan"),
    (frame(P.RESULT, 2, f32([1, 2, 3], [4, 5, 6])), "2 rows for a query of 1"),
    (frame(P.RESULT, 2, b"\x01\x00" + b"\x00" * 8), "says 1 rows"),
    (frame(P.PONG, 2), "answered with PONG"),
    (frame(P.ERROR, 2, b"\x01"), "malformed ERROR"),
])
def test_malformed_results_are_never_accepted(answer, message):
    script = [hello(), (frame(P.QUERY, 2, f32([0, 0])), answer)]
    with expected_protocol(script) as dev:
        with pytest.raises(SerialDeviceError, match=message):
            dev.query(torch.zeros(2))


def test_huge_garbage_is_skipped_without_unbounded_reads():
    q = frame(P.QUERY, 2, f32([0, 0]))
    junk = b"\x07" * (P.MAX_ENCODED + 5000)  # no delimiter: longer than any frame
    script = [hello(), (q, junk + b"\x00" + frame(P.RESULT, 2, f32([1, 2, 3])))]
    with expected_protocol(script) as dev:
        assert dev.query(torch.zeros(2)).tolist() == [1.0, 2.0, 3.0]
        assert dev._splitter.overflows == 1 and dev._splitter.pending == 0


def test_a_device_framing_another_version_is_refused_clearly():
    answer = frame(P.INFO, 1, info(protocol=2), version=2)
    peer = ScriptedPeer([(b"\x00" + frame(P.HELLO, 1), answer)])
    try:
        with pytest.raises(SerialDeviceError, match="protocol version 2 frames"):
            SerialDevice(peer.port, first_seq=0)
    finally:
        peer.finish()
    assert not peer.errors


@pytest.mark.parametrize("answer,message", [
    (info(protocol=2), "speaks protocol 2"),
    (info(n_out=0), "'n_out' must be a positive int"),
    (info(max_frame=16), "below 256"),
    (b"not json", "not UTF-8 JSON"),
])
def test_bad_info_is_refused_clearly(answer, message):
    peer = ScriptedPeer([(b"\x00" + frame(P.HELLO, 1), frame(P.INFO, 1, answer))])
    try:
        with pytest.raises(SerialDeviceError, match=message):
            SerialDevice(peer.port, first_seq=0)
    finally:
        peer.finish()
    assert not peer.errors


def test_missing_port_and_bad_options():
    with pytest.raises(SerialDeviceError, match="cannot open"):
        SerialDevice("/dev/phys-no-such-port")
    for bad in [dict(baudrate=0), dict(retries=-1), dict(latency=0.0), dict(first_seq=70000)]:
        with pytest.raises(ValueError):
            SerialDevice("/dev/phys-no-such-port", **bad)
    with pytest.raises(ValueError, match="names no port"):
        SerialDevice("serial://")


def test_a_restarted_device_is_greeted_again_and_its_settings_restored():
    params = [{"index": 0, "name": "gain", "size": 1, "min": 0, "max": 4}]
    set_gain = frame(P.SET, 2, b"\x00\x00" + np.float32(2.0).tobytes())
    restarted = frame(P.ERROR, 3, P.error_payload(P.HARDWARE, "restarted: send HELLO"))
    script = [hello(params=params, boot=1),
              (set_gain, frame(P.ACK_SET, 2)),
              (frame(P.QUERY, 3, f32([0, 0])), restarted),
              (frame(P.HELLO, 4), frame(P.INFO, 4, info(params=params, boot=2))),
              (frame(P.SET, 5, b"\x00\x00" + np.float32(2.0).tobytes()), frame(P.ACK_SET, 5)),
              (frame(P.QUERY, 6, f32([0, 0])), frame(P.RESULT, 6, f32([2, 2, 2])))]
    with expected_protocol(script) as dev:
        dev.set("gain", 2.0)
        assert dev.query(torch.zeros(2)).tolist() == [2.0, 2.0, 2.0]
        assert dev.link.reboots == 1 and dev.info.extra["boot"] == 2


def test_after_any_hello_the_settings_are_set_again_before_measuring():
    # a query needed a resend, so HELLO asks whether the device restarted; the first copy
    # of that HELLO gets no answer in time, and the INFO that answers the resend shows the
    # old boot. A copy may still have greeted a device that restarted meanwhile (its INFO
    # lost), so the settings are SET again before the next QUERY, never assumed.
    params = [{"index": 0, "name": "gain", "size": 3, "min": -4, "max": 4}]
    gain = b"\x00\x00" + np.asarray([2, 2, 2], "<f4").tobytes()
    q = frame(P.QUERY, 3, f32([0, 0]))
    hello4, info4 = frame(P.HELLO, 4), frame(P.INFO, 4, info(params=params, boot=1))
    script = [hello(params=params, boot=1),
              (frame(P.SET, 2, gain), frame(P.ACK_SET, 2)),
              (q, None), (q, frame(P.RESULT, 3, f32([2, 4, 6]))),
              (hello4, None), (hello4, info4),
              (frame(P.SET, 5, gain), frame(P.ACK_SET, 5)),
              (frame(P.QUERY, 6, f32([0, 0])), frame(P.RESULT, 6, f32([2, 2, 2])))]
    with expected_protocol(script, latency=0.05) as dev:
        dev.set("gain", [2, 2, 2])
        assert dev.query(torch.zeros(2)).tolist() == [2.0, 4.0, 6.0]
        assert dev.query(torch.zeros(2)).tolist() == [2.0, 2.0, 2.0]
        assert dev.link.reboots == 0


def test_a_late_info_with_a_new_boot_discards_the_answer_in_hand():
    # the resent HELLO's answer carries the late INFO of the first copy (old boot) and then
    # the INFO of a later copy that greeted a restarted device (new boot): the query is
    # measured again after the settings are restored
    params = [{"index": 0, "name": "gain", "size": 3, "min": -4, "max": 4}]
    gain = b"\x00\x00" + np.asarray([2, 2, 2], "<f4").tobytes()
    q, hello4 = frame(P.QUERY, 3, f32([0, 0])), frame(P.HELLO, 4)
    late = frame(P.INFO, 4, info(params=params, boot=1))
    fresh = frame(P.INFO, 4, info(params=params, boot=2))
    script = [hello(params=params, boot=1),
              (frame(P.SET, 2, gain), frame(P.ACK_SET, 2)),
              (q, None), (q, frame(P.RESULT, 3, f32([1, 1, 1]))),
              (hello4, None), (hello4, late + fresh),
              (frame(P.SET, 5, gain), frame(P.ACK_SET, 5)),
              (frame(P.HELLO, 6), frame(P.INFO, 6, info(params=params, boot=2))),
              (frame(P.SET, 7, gain), frame(P.ACK_SET, 7)),
              (frame(P.QUERY, 8, f32([0, 0])), frame(P.RESULT, 8, f32([2, 2, 2])))]
    with expected_protocol(script, latency=0.05) as dev:
        dev.set("gain", [2, 2, 2])
        assert dev.query(torch.zeros(2)).tolist() == [2.0, 2.0, 2.0]
        assert dev.link.reboots == 1 and dev.info.extra["boot"] == 2
