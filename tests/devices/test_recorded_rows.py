"""Fits of large recordings: ``max_rows``, a seeded uniform sample read in blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import phys
from phys.cli import main
from phys.devices import recorded_io
from phys.devices.recorded import MAX_FIT_ROWS, FitOptions
from phys.devices.recorded_io import read_recording, sample_rows
from phys.recording.reader import Column

ROWS = 3000


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """An HDF5 recording of one device, ``ROWS`` rows in batches of 100."""
    from phys.recording import Recording

    path = tmp_path_factory.mktemp("big") / "measurements.h5"
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (ROWS, 3)).astype(np.float32)
    y = np.stack([np.sin(2 * x[:, 0]), x[:, 1] * x[:, 2]], 1).astype(np.float32)
    info = phys.DeviceInfo("toy", 3, 2, -1.0, 1.0, max_batch=100)
    with Recording.create(path) as recording:
        recording.add_device(info)
        for q, start in enumerate(range(0, ROWS, 100)):
            recording.write(0, x[start:start + 100], y[start:start + 100], query=q,
                            phase="train")
        recording.flush()
    return path, x, y


def test_the_sample_is_seeded_uniform_and_without_repeats() -> None:
    a = sample_rows(10_000, 1000, seed=3)
    assert np.array_equal(a, sample_rows(10_000, 1000, seed=3))
    assert not np.array_equal(a, sample_rows(10_000, 1000, seed=4))
    assert len(np.unique(a)) == 1000 and np.all(np.diff(a) > 0)
    assert 0.4 < a.mean() / 10_000 < 0.6 and (a < 5000).sum() in range(400, 600)
    assert sample_rows(1000, 1000, 0) is None and sample_rows(5, None, 0) is None
    assert FitOptions().max_rows == MAX_FIT_ROWS == 100_000


def test_a_sample_of_an_hdf5_recording_is_read_in_blocks(big, monkeypatch) -> None:
    path, x, y = big
    monkeypatch.setattr(recorded_io, "_BLOCK", 256)
    read: list[int] = []
    original = Column._read

    def counting(self, sel):
        out = original(self, sel)
        read.append(len(out) if isinstance(sel, slice) else 1)
        return out

    monkeypatch.setattr(Column, "_read", counting)
    rec = read_recording(str(path), max_rows=500, seed=7)
    idx = sample_rows(ROWS, 500, 7)
    assert np.array_equal(rec.inputs, x[idx]) and np.array_equal(rec.outputs, y[idx])
    assert rec.available == ROWS and len(rec) == 500
    assert rec.rows[0] == f"measurements.h5 /devices/0 row {idx[0]}"
    assert max(read) <= 256 and sum(read) <= 2 * ROWS  # never the whole column at once


@pytest.mark.filterwarnings("ignore:.*poor")  # two epochs: the sizes matter here
def test_recorded_fits_on_max_rows_and_says_so(big, tmp_path) -> None:
    path, _, _ = big
    dev = phys.open(f"recorded:{path}", max_rows=600, hidden=16, epochs=2,
                    cache_dir=str(tmp_path))
    fit = dev.info.extra["fit"]
    assert (fit["rows_available"], fit["rows_used"], fit["held_out"]) == (ROWS, 600, 60)
    assert dev.info.extra["rows"] == 600
    full = phys.open(f"recorded:{path}", hidden=16, epochs=2, cache_dir=str(tmp_path))
    assert (full.info.extra["fit"]["rows_available"],
            full.info.extra["fit"]["rows_used"]) == (ROWS, ROWS)
    assert len(list(tmp_path.glob("*.pt"))) == 2  # max_rows is part of the cache key


@pytest.mark.filterwarnings("ignore:.*poor")
def test_twin_fit_max_rows(big, tmp_path, capsys) -> None:
    path, _, _ = big
    out = tmp_path / "twin.pt"
    assert main(["twin", "fit", str(path), "--out", str(out), "--max-rows", "500",
                 "--hidden", "16", "--epochs", "2"]) == 0
    assert capsys.readouterr().out.startswith("device 0: 500 of 3,000 rows, held-out ")
