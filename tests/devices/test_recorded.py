"""``recorded:`` and ``replay:``: devices from recorded measurements (files and HDF5)."""

from __future__ import annotations

import dataclasses
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

import phys
from phys.device import Device
from phys.devices.recorded import MIN_FIT_ROWS
from phys.testing import check_device

FAST = {"hidden": 64, "epochs": 20}


def small_optics() -> Device:
    """A simulator that a small surrogate fits well (a cavity's speckle needs more)."""
    return phys.open("optics", n_in=4, n_out=3, grid=(12, 12), pad=4, seed=2)


def record(device: Device, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    info = device.info
    gen = torch.Generator().manual_seed(seed)
    x = info.in_min + (info.in_max - info.in_min) * torch.rand(n, info.n_in, generator=gen)
    return x.numpy(), device.query(x).numpy()


def save_pair(folder: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    return f"{folder / 'x.npy'},{folder / 'y.npy'}"


def write_csv(path: Path, rows: list[list[float]] | np.ndarray, header: bool = True) -> None:
    lines = [",".join(["0"] * len(rows[0]))] if header else []
    lines += [",".join(repr(float(v)) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def sim_recording(tmp_path_factory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("optics")
    with small_optics() as dev:
        x, y = record(dev, 4000)
    return save_pair(folder, x, y), folder


def test_recorded_matches_the_simulator_to_its_held_out_error(sim_recording) -> None:
    pair, folder = sim_recording
    t0 = time.perf_counter()
    dev = phys.open(f"recorded:{pair}", **FAST)
    first = time.perf_counter() - t0
    rel = dev.info.extra["rel_rmse"]
    assert dev.info.extra["fit"]["samples"] == 4000 and dev.info.extra["fit"]["held_out"] == 400
    assert (dev.info.n_in, dev.info.n_out, dev.info.differentiable) == (4, 3, True)
    with small_optics() as sim:
        x, y = record(sim, 500, seed=7)  # fresh inputs
    got = dev.query(torch.from_numpy(x)).numpy()
    fresh = np.sqrt(((got - y) ** 2).mean()) / np.sqrt((y ** 2).mean())
    assert 0 < rel < 0.1
    assert fresh < 2 * rel + 0.01, (fresh, rel)
    cached = list(folder.glob("x.physnn-fit-*.pt"))
    assert len(cached) == 1 and dev.info.extra["cache"] == str(cached[0])

    t0 = time.perf_counter()
    again = phys.open(f"recorded:{pair}", **FAST)
    second = time.perf_counter() - t0
    assert second < first / 5, (first, second)
    assert again.info.extra["rel_rmse"] == rel
    assert torch.equal(again.query(torch.from_numpy(x)), torch.from_numpy(got))
    other = phys.open(f"recorded:{pair}", **{**FAST, "epochs": 2})  # other options: a new fit
    assert other.info.extra["rel_rmse"] != rel
    assert len(list(folder.glob("x.physnn-fit-*.pt"))) == 2


def test_recorded_refuses_inputs_outside_the_recorded_range(sim_recording) -> None:
    pair, _ = sim_recording
    dev = phys.open(f"recorded:{pair}", **FAST)
    above = torch.full((1, 4), dev.info.in_max * 1.01 + 0.01)
    with pytest.raises(ValueError, match="outside the device range"):
        dev.query(above)
    wider = phys.open(f"recorded:{pair}", in_min=-2.0, in_max=2.0, **FAST)
    assert (wider.info.in_min, wider.info.in_max) == (-2.0, 2.0)


def test_the_cache_goes_elsewhere_when_the_folder_is_read_only(tmp_path, monkeypatch) -> None:
    with small_optics() as dev:
        x, y = record(dev, 200)
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    pair = save_pair(shelf, x, y)
    shelf.chmod(0o555)
    monkeypatch.setenv("PHYS_DATA", str(tmp_path / "data"))
    try:
        dev = phys.open(f"recorded:{pair}", hidden=16, epochs=2)
    finally:
        shelf.chmod(0o755)
    assert Path(dev.info.extra["cache"]).parent == tmp_path / "data" / "fits"
    assert not list(shelf.glob("*.pt"))


def test_with_a_read_only_phys_data_the_cache_goes_to_the_home_cache(tmp_path,
                                                                    monkeypatch) -> None:
    with small_optics() as dev:
        x, y = record(dev, 200)
    shelf = tmp_path / "shared"  # a shared data folder: recordings and $PHYS_DATA in one
    shelf.mkdir()
    pair = save_pair(shelf, x, y)
    shelf.chmod(0o555)
    monkeypatch.setenv("PHYS_DATA", str(shelf))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    try:
        dev = phys.open(f"recorded:{pair}", hidden=16, epochs=2)
        again = phys.open(f"recorded:{pair}", hidden=16, epochs=2)
    finally:
        shelf.chmod(0o755)
    home = tmp_path / "home" / ".cache" / "phys" / "fits"
    assert Path(dev.info.extra["cache"]).parent == home
    assert again.info.extra["open_seconds"] < dev.info.extra["open_seconds"]
    assert not list(shelf.rglob("*.pt"))


def test_replay_answers_bit_exactly_and_refuses_other_rows(sim_recording) -> None:
    pair, _ = sim_recording
    x, y = np.load(pair.split(",")[0]), np.load(pair.split(",")[1])
    dev = phys.open(f"replay:{pair}")
    order = np.random.default_rng(0).permutation(len(x))[:300]
    batch = np.concatenate([x[order], x[order[:5]]])  # any order, repeats allowed
    got = dev.query(torch.from_numpy(batch)).numpy()
    assert got.tobytes() == np.concatenate([y[order], y[order[:5]]]).tobytes()
    unrecorded = batch[:4].copy()
    unrecorded[2, 1] = np.nextafter(unrecorded[2, 1], np.float32(2))
    with pytest.raises(ValueError, match=r"input row 2 of the batch.*not in the recording"):
        dev.query(torch.from_numpy(unrecorded))


def test_replay_refuses_one_input_recorded_with_two_outputs(tmp_path) -> None:
    x = np.array([[0.1, 0.2], [0.3, 0.4], [0.1, 0.2]], np.float32)
    y = np.array([[1.0], [2.0], [1.5]], np.float32)
    write_csv(tmp_path / "x.csv", x, header=False)
    write_csv(tmp_path / "y.csv", y, header=False)
    with pytest.raises(ValueError, match="x.csv line 1 and x.csv line 3"):
        phys.open(f"replay:{tmp_path / 'x.csv'},{tmp_path / 'y.csv'}")


class Recorder(Device):
    """Passes queries to a device and keeps every validated pair."""

    def __init__(self, inner: Device) -> None:
        super().__init__()
        self.inner, self.pairs = inner, []
        # it cannot set what the inner device declares: a replay has no parameters
        self.info = dataclasses.replace(inner.info, differentiable=False, params=())

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner.query(x)
        self.pairs.append((x.clone(), y.clone()))
        return y


def test_conformance_of_recorded_and_replay(sim_recording, tmp_path) -> None:
    pair, _ = sim_recording
    opener = partial(phys.open, f"recorded:{pair}", **FAST)
    assert "vjp" in check_device(opener(), reopen=opener)
    # replay what the conformance suite asked a simulator: the same seed asks the same
    recorder = Recorder(small_optics())
    check_device(recorder)
    x = torch.cat([p[0] for p in recorder.pairs]).numpy()
    y = torch.cat([p[1] for p in recorder.pairs]).numpy()
    _, first = np.unique(x, axis=0, return_index=True)
    replay_pair = save_pair(tmp_path, x[np.sort(first)], y[np.sort(first)])
    replayed = partial(phys.open, f"replay:{replay_pair}")
    passed = check_device(replayed(), reopen=replayed)
    applied = {"shape", "range-inclusive", "deterministic", "batch-independence", "seeded"}
    assert applied <= set(passed)


def test_published_acoustic_recordings_open_as_recorded(shared_data, tmp_path) -> None:
    folder = shared_data / "phyll_acoustic"
    dev = phys.open(f"recorded:{folder}", cache_dir=str(tmp_path), epochs=8)
    assert dev.info.n_in == dev.info.n_out == 20
    assert dev.info.extra["rows"] == 10000  # the header row of zeros is skipped
    assert 0 < dev.info.extra["rel_rmse"] < 0.25
    y = dev.query(torch.full((2, 20), 0.5))
    assert y.shape == (2, 20) and bool(torch.isfinite(y).all())
    replay = phys.open(f"replay:{folder / 'x_data.csv'},{folder / 'y_data.csv'}")
    lines = (folder / "x_data.csv").read_text().splitlines()
    x1 = torch.tensor([[float(v) for v in lines[1].split(",")]])
    y1 = [float(v) for v in (folder / "y_data.csv").read_text().splitlines()[1].split(",")]
    assert replay.query(x1)[0].tolist() == torch.tensor(y1).tolist()


def write_h5(path: Path, x: np.ndarray, y: np.ndarray, info: phys.DeviceInfo) -> None:
    """A recording of two devices as ``phys.recording`` writes it (the second device's
    outputs doubled)."""
    from phys.recording import Recording

    with Recording.create(path) as recording:
        for k in range(2):
            recording.add_device(info)
            recording.write(k, x.astype(np.float32), y.astype(np.float32) * (k + 1),
                            query=0, phase="train")
        recording.flush()


def test_hdf5_recordings_open_by_device(tmp_path) -> None:
    with small_optics() as dev:
        x, y = record(dev, 300)
        info = dev.info
    path = tmp_path / "measurements.h5"
    write_h5(path, x, y, info)
    replay = phys.open(f"replay:{path}", device=1)
    assert torch.equal(replay.query(torch.from_numpy(x[:7])), torch.from_numpy(y[:7] * 2))
    rec = phys.open(f"recorded:{path}", hidden=16, epochs=2)
    assert rec.info.extra["recorded_device"] == info.name
    assert Path(rec.info.extra["cache"]).name.startswith("measurements.physnn-fit-")
    with pytest.raises(ValueError, match="no device 5"):
        phys.open(f"replay:{path}", device=5)
    truncated = tmp_path / "cut.h5"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cut.h5"):
        phys.open(f"replay:{truncated}")


# -- bad recordings ------------------------------------------------------------------

def csv_pair(tmp_path: Path, x_rows, y_rows) -> str:
    write_csv(tmp_path / "x_data.csv", x_rows)
    write_csv(tmp_path / "y_data.csv", y_rows)
    return str(tmp_path)


def test_rows_of_the_wrong_width_name_file_and_line(tmp_path) -> None:
    x = [[0.1, 0.2]] * 5
    y = [[1.0]] * 2 + [[1.0, 2.0]] + [[1.0]] * 2
    with pytest.raises(ValueError, match=r"y_data.csv line 4: 2 values, expected 1"):
        phys.open(f"replay:{csv_pair(tmp_path, x, y)}")


def test_a_value_that_is_not_a_number_names_file_and_line(tmp_path) -> None:
    folder = csv_pair(tmp_path, [[0.1, 0.2]] * 3, [[1.0]] * 3)
    (tmp_path / "x_data.csv").write_text("a,b\n0.1,0.2\n0.1,oops\n0.3,0.4\n")
    with pytest.raises(ValueError, match=r"x_data.csv line 3: 'oops' is not a number"):
        phys.open(f"replay:{folder}")


def test_nan_and_inf_rows_are_dropped_counted_and_reported(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 2)), rng.random((40, 1))
    x[5, 0], y[9, 0] = np.nan, np.inf
    folder = csv_pair(tmp_path, x, y)
    with pytest.warns(UserWarning, match=r"dropped 2 row\(s\).*first at x_data.csv line 7"):
        dev = phys.open(f"replay:{folder}")
    assert dev.info.extra["dropped"] == 2 and dev.info.extra["rows"] == 38


def test_too_few_rows_for_a_fit_say_how_many_are_needed(tmp_path) -> None:
    rng = np.random.default_rng(0)
    folder = csv_pair(tmp_path, rng.random((MIN_FIT_ROWS - 1, 2)), rng.random((19, 1)))
    with pytest.raises(ValueError, match=f"19 usable row.*at least {MIN_FIT_ROWS}"):
        phys.open(f"recorded:{folder}")


def test_inputs_and_outputs_of_different_lengths(tmp_path) -> None:
    rng = np.random.default_rng(0)
    pair = save_pair(tmp_path, rng.random((30, 2)).astype(np.float32),
                     rng.random((29, 1)).astype(np.float32))
    with pytest.raises(ValueError, match="x.npy has 30 rows but y.npy has 29"):
        phys.open(f"recorded:{pair}")


def test_a_missing_file_is_named(tmp_path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(FileNotFoundError, match="y.npy does not exist"):
        phys.open(f"recorded:{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}")
    with pytest.raises(FileNotFoundError, match="holds neither x_data.csv"):
        phys.open(f"replay:{tmp_path}")
    with pytest.raises(ValueError, match="needs a recording"):
        phys.open("replay:")


def test_poor_fits_warn(tmp_path) -> None:
    rng = np.random.default_rng(0)
    pair = save_pair(tmp_path, rng.random((200, 2)).astype(np.float32),
                     rng.random((200, 3)).astype(np.float32))  # noise: nothing to fit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="poor, held-out relative RMSE"):
            phys.open(f"recorded:{pair}", hidden=16, epochs=3, cache=False)


@pytest.mark.parametrize("options, message", [
    ({"in_min": 1.0, "in_max": 0.0}, "in_min must be below in_max"),
    ({"in_max": float("nan")}, "in_max must be a finite number"),
    ({"device": -1}, "device must be an int >= 0"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"max_rows": 5}, "max_rows must be >= 20"),
])
def test_bad_options_are_refused_before_any_work(sim_recording, options, message) -> None:
    pair, _ = sim_recording
    with pytest.raises(ValueError, match=message):
        phys.open(f"recorded:{pair}", **options)
