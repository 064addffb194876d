"""The writer thread of a recording: it does the writing, the caller only buffers, and a
write that fails there is an error at the caller's next flush, with nothing flushed lost."""

from __future__ import annotations

import errno
import os
import threading

import numpy as np
import pytest

import phys.recording as recording
from phys.atomic import WriteError
from phys.device import DeviceInfo
from phys.recording import Recording, rows, writer

INFO = DeviceInfo("rig", n_in=8, n_out=4, in_min=-1.0, in_max=1.0, max_batch=4096)


def batch(i: int, n: int = 512) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(i)
    return (rng.uniform(-1, 1, (n, INFO.n_in)).astype(np.float32),
            rng.normal(size=(n, INFO.n_out)).astype(np.float32))


def test_rows_are_written_by_the_writer_thread_not_the_caller(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "SPILL_BYTES", 8192)
    threads = []
    write = rows.DeviceRows.write
    monkeypatch.setattr(rows.DeviceRows, "write", lambda self, block: (
        threads.append(threading.current_thread()), write(self, block))[-1])
    with Recording.create(tmp_path / "m.h5") as rec:
        rec.add_device(INFO)
        for i in range(20):
            rec.write(0, *batch(i), query=i, phase="train")
        rec.flush()
        assert rec.caller_seconds > 0 and rec.writer_seconds > 0
    assert len(threads) >= 20  # each batch is over SPILL_BYTES: one hand-over each
    assert all(t is not threading.main_thread() for t in threads)
    assert {t.name.split("_")[0] for t in threads} == {"phys-recording"}
    with recording.open(tmp_path / "m.h5") as f:
        d = f.devices[0]
        assert len(d) == 20 * 512
        np.testing.assert_array_equal(d.inputs[-512:], batch(19)[0])
        np.testing.assert_array_equal(d.query[::512], np.arange(20))


def test_a_failed_write_is_an_error_at_the_next_flush_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    rec = Recording.create(path)
    rec.add_device(INFO)
    rec.write(0, *batch(0), query=0, phase="train")
    rec.flush()

    def full(self, block):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rows.DeviceRows, "write", full)
    rec.write(0, *batch(1), query=1, phase="train")
    with pytest.raises(WriteError) as caught:
        rec.flush()
    assert str(caught.value) == (f"recording {path}: rows could not be written: the disk is "
                                 f"full (No space left on device); the file holds the rows "
                                 f"up to the last flush")
    with pytest.raises(WriteError):  # and every later call says so too
        rec.write(0, *batch(2), query=2, phase="train")
        rec.flush()
    with pytest.raises(WriteError):
        rec.close()
    assert rec.closed
    with recording.open(path) as f:  # the flushed batch is all there
        assert len(f.devices[0]) == 512
        np.testing.assert_array_equal(f.devices[0].outputs[:], batch(0)[1])


def test_a_slow_writer_bounds_the_rows_waiting_for_it(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "SPILL_BYTES", 4096)
    gate, waiting = threading.Event(), []
    write = rows.DeviceRows.write

    def slow(self, block):
        gate.wait(10)
        write(self, block)

    monkeypatch.setattr(rows.DeviceRows, "write", slow)
    rec = Recording.create(tmp_path / "m.h5")
    rec.add_device(INFO)
    done = threading.Event()

    def produce():
        for i in range(writer.MAX_QUEUED + 4):
            rec.write(0, *batch(i), query=i, phase="train")
            waiting.append(len(rec._queued))
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    assert not done.wait(0.5)  # the caller waits for the stalled writer
    assert max(waiting) <= writer.MAX_QUEUED
    gate.set()
    t.join(10)
    assert done.is_set()
    rec.close()
    with recording.open(tmp_path / "m.h5") as f:
        assert len(f.devices[0]) == (writer.MAX_QUEUED + 4) * 512
