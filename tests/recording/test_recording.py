"""measurements.h5: round trip, lazy reading, resuming, and the errors of bad input."""

from __future__ import annotations

import json
import tracemalloc

import h5py
import numpy as np
import pytest

import phys.recording as recording
from phys.device import DeviceInfo, ParamSpec
from phys.recording import Recording

A = DeviceInfo("rig", n_in=4, n_out=3, in_min=-1.0, in_max=1.0, max_batch=64,
               exclusive=True, params=(ParamSpec("mask", (2,), 0.0, 1.0),),
               extra={"firmware": "1.2"})
B = DeviceInfo("cavity", n_in=2, n_out=5, in_min=0.0, in_max=2.0, max_batch=8)


def batch(info: DeviceInfo, i: int, n: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``i`` of a device: the same values every time it is asked for."""
    rng = np.random.default_rng(1000 * info.n_in + i)
    x = rng.uniform(info.in_min, info.in_max, (n, info.n_in)).astype(np.float32)
    return x, rng.normal(size=(n, info.n_out)).astype(np.float32)


def test_round_trip_of_two_devices(tmp_path):
    path = tmp_path / "measurements.h5"
    with Recording.create(path) as rec:
        assert (rec.add_device(A), rec.add_device(B)) == (0, 1)
        for i in range(5):
            rec.write(0, *batch(A, i), query=i, phase="train" if i < 3 else "eval",
                      time=100.0 + i)
            if i % 2 == 0:
                rec.write(1, *batch(B, i, n=3), query=i // 2, phase="other")
        rec.write_setting(0, "mask", [0.25, 0.5], row=14)
        rec.flush()
        rec.write(0, *batch(A, 5), query=5, phase=1)
    with recording.open(path) as f:
        a, b = f.devices
        assert (a.info, b.info) == (A, B) and (len(a), len(b)) == (42, 9)
        assert np.array_equal(a.inputs[:], np.concatenate([batch(A, i)[0] for i in range(6)]))
        assert np.array_equal(a.outputs[:], np.concatenate([batch(A, i)[1] for i in range(6)]))
        assert np.array_equal(b.outputs[:], np.concatenate([batch(B, i, 3)[1] for i in (0, 2, 4)]))
        assert a.query[:].tolist() == [i for i in range(6) for _ in range(7)]
        assert a.phase[:].tolist() == [0] * 21 + [1] * 21 and set(b.phase[:]) == {2}
        assert a.time[:35].tolist() == [100.0 + i for i in range(5) for _ in range(7)]
        assert (a.inputs.dtype, a.query.dtype, a.time.dtype, a.phase.dtype) == \
            (np.float32, np.int64, np.float64, np.uint8)
        assert a.settings == [recording.Setting(14, "mask", (0.25, 0.5))] and b.settings == []
        assert np.array_equal(a.inputs[3, 1:], batch(A, 0)[0][3, 1:])
        assert np.array_equal(a.outputs[[40, 2, 2]], a.outputs[:][[40, 2, 2]])
    with h5py.File(path, "r") as h:  # the layout, as documented
        assert h.attrs["format"] == "physnn-recording" and h.attrs["version"] == 1
        assert DeviceInfo.from_dict(json.loads(h["devices/0"].attrs["info"])) == A
        assert h["devices/1/inputs"].maxshape == (None, 2) and h["devices/1/inputs"].chunks


def test_reading_is_lazy(tmp_path):
    path, n = tmp_path / "big.h5", 100_000
    info = DeviceInfo("wide", n_in=74, n_out=64, in_min=-1.0, in_max=1.0, max_batch=4096)
    with Recording.create(path) as rec:
        rec.add_device(info)
        x = np.linspace(-1, 1, 74 * 1000, dtype=np.float32).reshape(1000, 74)
        for i in range(n // 1000):
            rec.write(0, x, np.full((1000, 64), i, np.float32), query=i, phase="train")
    assert path.stat().st_size > 50e6
    tracemalloc.start()
    try:
        with recording.open(path) as f:
            dev = f.devices[0]
            rows = dev.outputs[54_321:54_331]
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows.shape == (10, 64) and (rows == 54).all() and len(dev) == n
    assert peak < 5e6  # a few chunks, not the 56 MB of data


def test_resume_after_the_last_checkpoint_has_no_duplicates_or_gaps(tmp_path):
    path = tmp_path / "measurements.h5"
    rec = Recording.create(path)
    rec.add_device(A)
    for i in range(6):
        rec.write(0, *batch(A, i), query=i, phase="train")
        if i == 3:
            rec.flush()  # the checkpoint: 4 queries, 28 rows
            rec.write_setting(0, "mask", [1.0, 1.0])
    rec.flush()  # more was flushed than the checkpoint saw
    rec.write(0, *batch(A, 6), query=6, phase="train")  # and more never flushed
    del rec  # the process dies (the file is not closed)
    with Recording.append(path) as rec:
        assert rec.rows(0) == 42 and rec.next_query(0) == 6
        rec.truncate(0, 28)
        assert rec.rows(0) == 28 and rec.next_query(0) == 4
        for i in range(4, 8):
            rec.write(0, *batch(A, i), query=rec.next_query(0), phase="train")
    with recording.open(path) as f:
        dev = f.devices[0]
        assert dev.query[:].tolist() == [i for i in range(8) for _ in range(7)]
        assert np.array_equal(dev.inputs[:], np.concatenate([batch(A, i)[0] for i in range(8)]))
        assert dev.settings == [recording.Setting(28, "mask", (1.0, 1.0))]
    with Recording.append(path) as rec:
        rec.truncate(0, 27)  # a setting after the rows kept goes with them
    with recording.open(path) as f:
        assert len(f.devices[0]) == 27 and f.devices[0].settings == []


def test_bad_batches_name_the_device_and_row(tmp_path):
    with Recording.create(tmp_path / "m.h5") as rec:
        rec.add_device(B)
        rec.write(1 - 1, *batch(B, 0, n=8), query=0, phase="train")
        x, y = batch(B, 1)
        bad = y.copy()
        bad[3, 1] = np.nan
        with pytest.raises(ValueError, match=r"device 0 \('cavity'\): outputs of row 11 "):
            rec.write(0, x, bad, query=1, phase="train")
        x_out = x.copy()
        x_out[2, 0] = 5.0
        with pytest.raises(ValueError, match=r"inputs of row 10 .*outside the device range"):
            rec.write(0, x_out, y, query=1, phase="train")
        with pytest.raises(ValueError, match=r"device 0 \('cavity'\): inputs must have shape "
                                             r"\(B, 2\), got \(7, 3\) \(at row 8\)"):
            rec.write(0, np.zeros((7, 3)), y, query=1, phase="train")
        with pytest.raises(ValueError, match=r"outputs must have shape \(7, 5\)"):
            rec.write(0, x, y[:6], query=1, phase="train")
        with pytest.raises(ValueError, match="phase must be one of train, eval, other"):
            rec.write(0, x, y, query=1, phase="test")
        with pytest.raises(ValueError, match="has no device 1"):
            rec.write(1, x, y, query=1, phase="train")
        with pytest.raises(ValueError, match="setting 'mask' has a value that is not finite"):
            rec.write_setting(0, "mask", [np.inf])
        with pytest.raises(ValueError, match="cannot truncate to 9 rows; it has 8"):
            rec.truncate(0, 9)
        assert rec.rows(0) == 8  # nothing of a refused batch was kept
    with pytest.raises(ValueError, match="exists; use Recording.append"):
        Recording.create(tmp_path / "m.h5")
    Recording.create(tmp_path / "m.h5", overwrite=True).close()
    with recording.open(tmp_path / "m.h5") as f:
        assert f.devices == []


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.h5"
    with Recording.create(path) as rec:
        rec.add_device(A)
        for i in range(300):
            rec.write(0, *batch(A, i), query=i, phase="train")
    return path


def test_files_that_are_not_recordings_are_named(tmp_path, good):
    text = tmp_path / "notes.h5"
    text.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match=f"recording {text} is not an HDF5 file"):
        recording.open(text)
    with pytest.raises(FileNotFoundError, match="missing.h5: no such file"):
        recording.open(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h:
        h.attrs["format"] = "something else"
    with pytest.raises(ValueError, match=f"{other} is not a physnn recording .*'something else'"):
        recording.open(other)
    with h5py.File(good, "r+") as h:
        h.attrs["version"] = 7
    with pytest.raises(ValueError, match="has version 7; this physnn reads version 1"):
        recording.open(good)
    with pytest.raises(ValueError, match="has version 7"):
        Recording.append(good)


@pytest.mark.parametrize("cut", [1, 4096, 100_000])
def test_a_truncated_file_is_named(good, cut):
    data = good.read_bytes()
    good.write_bytes(data[:-cut])
    with pytest.raises(ValueError, match=f"recording {good}.*(damaged|truncated|not an HDF5)"):
        with recording.open(good) as f:
            for dev in f.devices:
                dev.inputs[:], dev.outputs[:]


def test_inconsistent_lengths_name_the_device_and_lengths(good):
    with h5py.File(good, "r+") as h:
        h["devices/0/outputs"].resize(2000, axis=0)
    with pytest.raises(ValueError, match=r"device 0: datasets of inconsistent lengths \(inputs "
                                         r"2100, outputs 2000, query 2100.*2100 rows"):
        recording.open(good)
    with h5py.File(good, "r+") as h:
        h["devices/0"].attrs["info"] = "{not json"
    with pytest.raises(ValueError, match="device 0: bad or missing info"):
        recording.open(good)
