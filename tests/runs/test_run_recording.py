"""``phys train --record``: every device query of a run in ``measurements.h5``, exactly
once, also when the run is killed and resumed."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from kill_helpers import kill_and_resume

import phys
from phys.experiment import TrainSpec
from phys.recording import open as open_recording
from phys.runs import train

CONFIG = dict(data="digits", layers=2, hidden=16, measurements=8, epochs=3, batch_size=32,
              negatives="random", lr=1e-2, seed=3, subset=320)
ARGS = [f"--{k.replace('_', '-')}={v}" for k, v in CONFIG.items()]


def _columns(path) -> list[dict[str, np.ndarray]]:
    with open_recording(path) as recording:
        return [{name: np.asarray(getattr(d, name)[:]) for name in
                 ("inputs", "outputs", "query", "phase")} for d in recording.devices]


def test_a_run_records_every_query_with_its_phase(tmp_path, one_thread) -> None:
    results = train(TrainSpec(**CONFIG), out=tmp_path, record=True, tensorboard=False)
    devices = _columns(tmp_path / "measurements.h5")
    assert len(devices) == CONFIG["layers"]
    train_rows = sum(int((d["phase"] == 0).sum()) for d in devices)
    eval_rows = sum(int((d["phase"] == 1).sum()) for d in devices)
    assert train_rows == results["device_samples"]
    assert eval_rows == results["eval_device_samples"]
    for d in devices:  # query ids run 0, 1, ... in order, one per batch
        assert np.all(np.diff(d["query"]) >= 0)
        assert set(d["query"].tolist()) == set(range(int(d["query"].max()) + 1))


def test_a_replay_of_the_recording_answers_bit_exactly(tmp_path, one_thread) -> None:
    # the oscillators answer an input with the same bits in any batch (the cavity's
    # iterative solver and the optics' FFTs differ in the last bits between batches,
    # and replay refuses an input recorded with two answers)
    train(TrainSpec(**{**CONFIG, "device": "oscillators", "layers": 1, "epochs": 1}),
          out=tmp_path, record=True, tensorboard=False)
    (device,) = _columns(tmp_path / "measurements.h5")
    replay = phys.open(f"replay:{tmp_path / 'measurements.h5'}")
    import torch

    order = torch.randperm(len(device["inputs"]))  # in any order
    answers = replay.query(torch.from_numpy(device["inputs"])[order])
    assert torch.equal(answers, torch.from_numpy(device["outputs"])[order])


def test_simulators_are_not_recorded_by_default(tmp_path, one_thread) -> None:
    train(TrainSpec(**{**CONFIG, "epochs": 1}), out=tmp_path, tensorboard=False)
    assert not (tmp_path / "measurements.h5").exists()


@pytest.mark.parametrize("seed", [7])
def test_sigkill_and_resume_record_every_query_exactly_once(tmp_path, seed) -> None:
    reference = tmp_path / "reference"
    train(TrainSpec(**CONFIG), out=reference, record=True, tensorboard=False,
          checkpoint_every=2)
    out = tmp_path / "killed"
    kill_and_resume(["train", *ARGS, "--record", "--no-tensorboard", "--checkpoint-every",
                     "2"], out, out / "checkpoint.pt", kills=3, rng=random.Random(seed),
                    checkpoints=(1, 3))
    killed, uninterrupted = (_columns(d / "measurements.h5") for d in (out, reference))
    for a, b in zip(killed, uninterrupted, strict=True):
        for name in ("inputs", "outputs", "query", "phase"):
            assert np.array_equal(a[name], b[name]), name
    results = json.loads((out / "results.json").read_text())
    assert sum(int((d["phase"] == 0).sum()) for d in killed) == results["device_samples"]


def _in_effect(settings) -> list[tuple[int, tuple[float, ...]]]:
    """Each change of a setting's value, with the row it applies from."""
    out: list[tuple[int, tuple[float, ...]]] = []
    for s in settings:
        if not out or out[-1][1] != s.values:
            out.append((s.row, s.values))
    return out


def test_a_run_training_the_physics_killed_and_resumed_equals_the_uninterrupted(tmp_path):
    config = {**CONFIG, "layers": 1, "epochs": 2, "subset": 192, "train_physics": "spsa",
              "physics_every": 2, "physics_directions": 1}
    reference = tmp_path / "reference"
    want = train(TrainSpec(**config), out=reference, record=True, tensorboard=False,
                 checkpoint_every=1)
    out = tmp_path / "killed"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in config.items()]
    kill_and_resume(["train", *args, "--record", "--no-tensorboard", "--checkpoint-every",
                     "1"], out, out / "checkpoint.pt", kills=2, rng=random.Random(5),
                    checkpoints=(1, 4))
    got = json.loads((out / "results.json").read_text())
    assert got["physics"]["values"] == want["physics"]["values"]
    assert got["physics"]["samples"] == want["physics"]["samples"] > 0
    assert got["test_accuracy"] == want["test_accuracy"]
    with open_recording(out / "measurements.h5") as a, \
            open_recording(reference / "measurements.h5") as b:
        # a resume sets the checkpoint's values on the new device again (recorded, and
        # the same as those in effect): the settings in effect at every row are equal
        assert _in_effect(a.devices[0].settings) == _in_effect(b.devices[0].settings)
        assert len(a.devices[0].settings) >= len(b.devices[0].settings) > 0
        assert np.array_equal(a.devices[0].outputs[:], b.devices[0].outputs[:])
