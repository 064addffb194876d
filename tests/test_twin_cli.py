"""``phys twin fit`` and ``phys train --trainer pat --twin FILE.pt``: twins fitted to a
recording, PAT through them without device queries spent on fitting."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from phys.cli import main
from phys.experiment import TrainSpec, prepare
from phys.options import OptionError
from phys.runs import train

#: Small fits of the cavity's speckle are poor; what is tested here is not their quality.
pytestmark = pytest.mark.filterwarnings("ignore:.*poor")

#: A small PAT run on the cavity: 2 layers of 64 -> 16 and 32 -> 16.
SMALL = {"device": "cavity", "data": "digits", "trainer": "pat", "layers": 2, "hidden": 32,
         "measurements": 16, "epochs": 3, "lr": 0.01, "subset": 400, "twin_samples": 600}
FIT = ["--hidden", "32", "--epochs", "5"]


def _train(out: Path, **over) -> dict:
    return train(TrainSpec(**{**SMALL, **over}), out=out, tensorboard=False)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A run directory with ``measurements.h5``: PAT with a surrogate twin, recorded."""
    out = tmp_path_factory.mktemp("recorded") / "run"
    train(TrainSpec(**SMALL), out=out, tensorboard=False, record=True)
    return out


@pytest.fixture(scope="module")
def twin_file(recorded, tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("twins") / "twin.pt"
    assert main(["twin", "fit", str(recorded), "--out", str(path), *FIT]) == 0
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_twin_fit_writes_one_twin_per_device_as_plain_data(recorded, tmp_path,
                                                           capsys) -> None:
    out = tmp_path / "twin.pt"
    assert main(["twin", "fit", str(recorded / "measurements.h5"), "--out", str(out),
                 *FIT]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["device 0", "device 1"]
    assert all("rows, held-out relative RMSE" in line and line.endswith(" s")
               for line in lines[:2]), lines
    assert lines[2].startswith(f"wrote {out} (2 twin(s), sha256 ")
    blob = torch.load(out, weights_only=True)
    assert blob["format"] == "physnn-twins" and [t["device"] for t in blob["twins"]] == [0, 1]
    assert [t["range"] for t in blob["twins"]] == [[-1.0, 1.0]] * 2  # the device's, recorded

    only = tmp_path / "one.pt"
    assert main(["twin", "fit", str(recorded), "--out", str(only), "--device", "1",
                 *FIT]) == 0
    assert [t["device"] for t in torch.load(only, weights_only=True)["twins"]] == [1]


def test_pat_through_a_twin_file_spends_no_queries_on_fitting(twin_file, tmp_path) -> None:
    path, digest = twin_file
    from_file = _train(tmp_path / "file", twin=str(path))
    simulator = _train(tmp_path / "sim", twin="simulator")  # no fitting queries either
    surrogate = _train(tmp_path / "sur", twin="surrogate")
    assert from_file["device_samples"] == simulator["device_samples"] > 0
    assert surrogate["device_samples"] == (from_file["device_samples"]
                                           + SMALL["layers"] * SMALL["twin_samples"])
    notes = from_file["twins"]
    assert [(n["kind"], n["device"], n["device_samples"]) for n in notes] == [
        ("file", 0, 0), ("file", 1, 0)]
    assert {n["sha256"] for n in notes} == {digest} and notes[0]["file"] == str(path)
    assert from_file["test_accuracy"] > 0.5  # 10 classes: chance is 0.1


def test_pat_with_a_twin_file_from_the_cli(twin_file, tmp_path, capsys) -> None:
    path, _ = twin_file
    args = ["train", "--trainer", "pat", "--twin", str(path), "--layers", "2", "--hidden",
            "32", "--measurements", "16", "--epochs", "1", "--subset", "200", "--out",
            str(tmp_path / "run"), "--no-progress", "--no-tensorboard"]
    assert main(args) == 0
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("over, message", [
    ({"measurements": 8}, r"layer 1: the twin takes 64 inputs and gives 16 outputs, but "
                          r"the layer's device 'cavity' takes 64 and gives 8"),
    ({"layers": 3}, r"layer 3 needs the twin of recorded device 2, but the file holds "
                    r"twins of device\(s\) 0, 1 only"),
    ({"hidden": 16}, r"layer 2: the twin takes 32 inputs"),
])
def test_a_twin_file_that_does_not_fit_the_layers_is_refused(twin_file, tmp_path, over,
                                                             message) -> None:
    path, _ = twin_file
    with pytest.raises(OptionError, match=message) as err:
        _train(tmp_path / "run", twin=str(path), **over)
    assert err.value.option == "twin" and str(path) in str(err.value)
    assert not (tmp_path / "run" / "results.json").exists()


def test_a_twin_fitted_for_another_input_range_is_refused(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (300, 64)).astype(np.float32)  # the cavity takes [-1, 1]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x[:, :16] ** 2)
    path = tmp_path / "twin.pt"
    assert main(["twin", "fit", f"{tmp_path}/x.npy,{tmp_path}/y.npy", "--out", str(path),
                 "--hidden", "8", "--epochs", "1", "--in-min", "0", "--in-max", "1"]) == 0
    with pytest.raises(OptionError, match=r"layer 1: the twin was fitted for inputs in "
                                          r"\[0, 1\], but the layer's device 'cavity' "
                                          r"takes \[-1, 1\]"):
        _train(tmp_path / "run", twin=str(path), layers=1)


def test_missing_and_garbage_twin_files_are_refused_before_any_work(tmp_path,
                                                                    capsys) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    other = tmp_path / "other.pt"
    torch.save({"format": "something else"}, other)
    broken = tmp_path / "broken.pt"
    torch.save({"format": "physnn-twins", "version": 1, "twins": [{"device": 0}]}, broken)
    for path, message in ((tmp_path / "none.pt", "no such file"),
                          (junk, "not a file of twins"), (other, "not a file of twins"),
                          (broken, "twin 0 does not load")):
        with pytest.raises(OptionError, match=message):
            prepare(TrainSpec(**{**SMALL, "twin": str(path)}))
    assert main(["train", "--trainer", "pat", "--twin", str(tmp_path / "none.pt"),
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"phys: error: --twin '{tmp_path / 'none.pt'}': no such file")
    assert not (tmp_path / "run").exists()
    with pytest.raises(OptionError, match="twin must be one of surrogate, simulator or a "
                                          "file of twins FILE.pt"):
        TrainSpec(twin="twin.pth")


@pytest.mark.parametrize("args, message", [
    (["--out", "twin.txt"], "--out must name a twin file ending in .pt"),
    (["--out", "nowhere/twin.pt"], "--out nowhere/twin.pt: no folder nowhere"),
    (["--out", "t.pt", "--device", "5"], "recording '*' holds 2 device(s), no device 5"),
    (["--out", "t.pt", "--max-rows", "3"], "--max-rows must be >= 20"),
    (["--out", "t.pt", "--in-min", "1", "--in-max", "0"], "--in-min must be below in_max"),
])
def test_twin_fit_refuses_bad_arguments_before_fitting(recorded, tmp_path, monkeypatch,
                                                       capsys, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["twin", "fit", str(recorded), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("phys: error: ") and all(p in err for p in message.split("*")), err
    assert not list(tmp_path.iterdir())


class _Stop(Exception):
    pass


def test_pat_through_a_twin_file_resumes(twin_file, tmp_path) -> None:
    path, digest = twin_file
    whole = _train(tmp_path / "whole", twin=str(path))

    def stop(metrics: dict) -> None:
        raise _Stop

    spec = TrainSpec(**{**SMALL, "twin": str(path)})
    with pytest.raises(_Stop):
        train(spec, out=tmp_path / "cut", tensorboard=False, on_epoch=stop)
    resumed = train(spec, out=tmp_path / "cut", tensorboard=False, resume=True)
    assert resumed["checkpoints"]["resumed_from_epoch"] == 1
    assert resumed["device_samples"] == whole["device_samples"]
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    assert {n["sha256"] for n in resumed["twins"]} == {digest}
