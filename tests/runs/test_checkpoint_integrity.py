"""Checkpoints are verified before use: a damaged one is never loaded (the previous one
is, with a warning, or the run is refused), values out of range are refused, and an
edited ``config.json`` is caught on resume."""

from __future__ import annotations

import json
import random
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from phys.cli import main
from phys.experiment import TrainSpec
from phys.runs import CheckpointError, CheckpointWarning, RunDir
from phys.runs import train as train_run
from phys.runs.checksum import seal, unseal

CONFIG = dict(data="digits", layers=1, hidden=16, epochs=2, batch_size=64, lr=1e-2, seed=3)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished two-epoch run: checkpoint.pt (epoch 2) and checkpoint.prev.pt (1)."""
    out = tmp_path_factory.mktemp("integrity") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_run(TrainSpec(**CONFIG), out=out, checkpoint_every=0)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture
def run(finished, tmp_path) -> RunDir:
    """A copy of the finished run, its results removed (as if killed at the end)."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / "results.json").unlink()
    return RunDir(out)


def _load_checked(run: RunDir, original: dict) -> str:
    """Load; ``"previous"`` (with a warning naming checkpoint.pt) or ``"refused"``; a
    load of the damaged file fails the test unless its weights are the original's."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            state, used = run.load()
        except CheckpointError:
            return "refused"
    if used == run.previous:
        assert state["epoch"] == 1
        (warning,) = [w for w in caught if issubclass(w.category, CheckpointWarning)]
        assert "checkpoint.pt is damaged or truncated: its checksum does not match" in str(
            warning.message) or "checkpoint.pt is damaged or truncated: it has no checksum" \
            in str(warning.message)
        return "previous"
    for key, tensor in original["model"].items():  # pragma: no cover - the failure case
        assert torch.equal(tensor, state["model"][key]), f"changed weights loaded: {key}"
    raise AssertionError(f"a damaged checkpoint was loaded: {used}")


def test_bit_flips_at_random_offsets_never_load_silently(run):
    data = run.latest.read_bytes()
    original = torch.load(run.latest, weights_only=True)
    rng = random.Random(14)
    outcomes = []
    for offset in rng.sample(range(len(data)), 200):
        damaged = bytearray(data)
        damaged[offset] ^= 1 << rng.randrange(8)
        run.latest.write_bytes(bytes(damaged))
        outcomes.append(_load_checked(run, original))
    assert outcomes == ["previous"] * 200  # the previous checkpoint is intact: used
    run.latest.write_bytes(data)
    assert run.load()[1] == run.latest  # the undamaged file verifies


def test_random_bytes_in_the_middle_and_both_damaged(run):
    data = run.latest.read_bytes()
    original = torch.load(run.latest, weights_only=True)
    mid = len(data) // 2
    noise = random.Random(4096).randbytes(4096)
    run.latest.write_bytes(data[:mid] + noise + data[mid + 4096:])
    assert _load_checked(run, original) == "previous"
    run.latest.write_bytes(data[:mid] + noise + data[mid:])  # 4 KB inserted
    assert _load_checked(run, original) == "previous"
    prev = run.previous.read_bytes()
    run.previous.write_bytes(prev[:100] + bytes([prev[100] ^ 4]) + prev[101:])
    with pytest.raises(CheckpointError, match=r"no readable checkpoint: checkpoint\.pt is "
                                              r"damaged.*checkpoint\.prev\.pt is damaged"):
        run.load()


def test_a_sealed_checkpoint_is_a_plain_torch_file():
    import io

    buf = io.BytesIO()
    torch.save({"epoch": 1, "w": torch.arange(5.0)}, buf)
    sealed = seal(buf.getvalue(), "ab" * 32)
    assert unseal(sealed) == ("ab" * 32, "")
    state = torch.load(io.BytesIO(sealed), weights_only=True)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.arange(5.0))
    assert unseal(sealed[:-1])[0] is None and unseal(buf.getvalue())[0] is None
    with pytest.raises(ValueError, match="zip archive without a comment"):
        seal(sealed, "ab" * 32)


@pytest.mark.parametrize("field, value, message", [
    ("epoch", 10**9, r"epoch 1000000000 is out of range: the run has 2 epochs"),
    ("epoch", -1, r"epoch -1 is out of range"),
    ("seconds", float("nan"), r"seconds nan is out of range"),
    ("progress", {"batches": 10**6}, r"batch position 1000000 in epoch 2 is out of range"),
])
def test_values_out_of_range_are_refused(run, capsys, one_thread, field, value, message):
    state, _ = run.load()
    if field == "progress":  # within the last epoch: the run's epoch 1 checkpoint
        state = torch.load(run.previous, weights_only=True)
        value = {**value, "order": torch.arange(10), "losses": [1.0], "seconds": 0.0,
                 "correct": 0, "samples": 0}
    run.save({**state, field: value})  # a well-sealed file with a bad value
    with pytest.raises(CheckpointError, match=message):
        train_run(TrainSpec(**CONFIG), out=run.path, resume=True, checkpoint_every=0)
    assert main(["train", "--resume", str(run.path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("phys: error: ") and "checkpoint.pt" in err
    assert not run.results.exists()


def test_an_edited_config_json_is_refused_on_resume(run, capsys, one_thread):
    saved = json.loads(run.config_path.read_text())
    saved["config"]["seed"] = 4
    run.config_path.write_text(json.dumps(saved, indent=2))
    assert main(["train", "--resume", str(run.path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (f"cannot resume {run.path}: config.json was changed after checkpoint.pt was "
            f"written") in err
    assert "seed: 3 in checkpoint.pt, 4 in config.json" in err and "--overwrite" in err
    assert not run.results.exists()
    saved["config"]["seed"] = 3  # put back: resumes (and finishes)
    run.config_path.write_text(json.dumps(saved))
    assert main(["train", "--resume", str(run.path), "--no-progress"]) == 0
    assert run.results.exists()
    saved["config"]["lr"] = 0.5  # a finished run's edited config: refused as well
    run.config_path.write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match=r"lr: 0\.01 in checkpoint\.pt, 0\.5 in config"):
        train_run(TrainSpec(**{**CONFIG, "lr": 0.5}), out=run.path, resume=True)
    assert run.load()[1] == run.latest  # a finished run's model loads (not a resume)
