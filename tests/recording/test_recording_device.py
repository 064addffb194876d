"""RecordingDevice: the wrapped device as a caller sees it, with every query recorded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import phys
import phys.recording as recording
from phys.device import Device, DeviceInfo, ParamSpec
from phys.recording import Recording, RecordingDevice
from phys.testing import check_device


def cavity() -> Device:
    return phys.open("cavity", n_in=6, n_out=5, n_scatterers=16)


class Tunable(Device):
    """A device with one setting, ``gain``, that scales its answers."""

    def __init__(self) -> None:
        super().__init__()
        self.info = DeviceInfo("tunable", n_in=2, n_out=2, in_min=-1.0, in_max=1.0,
                               max_batch=4, params=(ParamSpec("gain", (1,), 0.0, 5.0),))
        self.gain = 1.0

    def set(self, name: str, values: float) -> None:
        self.info.param(name)
        self.gain = float(values)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * x


def test_it_records_exactly_the_queries_made_and_answers_as_the_device(tmp_path):
    path, reference = tmp_path / "m.h5", cavity()
    inner, asked, answers = cavity(), [], []
    with Recording.create(path) as rec:
        dev = RecordingDevice(inner, rec)
        assert dev.info == inner.info and dev.stats is inner.stats
        for i, n in enumerate([3, 1, 4100, 7]):  # 4100: more than one round trip
            x = torch.rand(n, 6, dtype=torch.float64) * 2 - 1
            dev.phase = "eval" if i == 2 else "train"
            answers.append(dev.query(x))
            asked.append(x.float())
            assert torch.equal(answers[-1], reference.query(x))
        single = torch.full((6,), 0.5)
        assert dev.query(single).shape == (5,)
        asked.append(single[None]), answers.append(reference.query(single)[None])
        with pytest.raises(ValueError, match="NaN"):
            dev.query(torch.full((2, 6), float("nan")))  # refused: nothing recorded
        assert rec.rows(0) == inner.stats.samples == 4112
    with recording.open(path) as f:
        (d,) = f.devices
        assert d.info == inner.info and len(d) == inner.stats.samples
        assert np.array_equal(d.inputs[:], torch.cat(asked).numpy())
        assert np.array_equal(d.outputs[:], torch.cat(answers).numpy())
        assert d.query[:].tolist() == [0] * 3 + [1] + [2] * 4100 + [3] * 7 + [4]
        assert d.phase[:].tolist() == [0] * 4 + [1] * 4100 + [0] * 8


def test_it_passes_the_conformance_suite_and_forwards(tmp_path):
    with Recording.create(tmp_path / "m.h5") as rec:
        inner = cavity()
        dev = RecordingDevice(inner, rec)
        assert "batch-split" in check_device(dev)
        assert rec.rows(0) == inner.stats.samples > 0
        assert dev.to("cpu") is dev and dev.n_scatterers == inner.n_scatterers
        assert dev.closed and inner.closed


def test_phase_of_settings_and_resuming(tmp_path):
    path, training = tmp_path / "m.h5", [True]
    with Recording.create(path) as rec:
        rec.add_device(cavity().info)
        dev = RecordingDevice(Tunable(), rec,
                              phase_of=lambda: "train" if training[0] else "eval")
        assert dev.k == 1
        dev.query(torch.ones(2, 2))
        dev.set("gain", 3.0)
        training[0] = False
        assert torch.equal(dev.query(torch.ones(1, 2)), torch.full((1, 2), 3.0))
        with pytest.raises(ValueError, match="no parameter 'loss'"):
            dev.set("loss", 1.0)
        with pytest.raises(ValueError, match="phase must be one of"):
            dev.phase = "test"
    with Recording.append(path) as rec:
        with pytest.raises(ValueError, match="device 0 was recorded as 'cavity' with other "
                                             "info than 'tunable'"):
            RecordingDevice(Tunable(), rec, 0)
        dev = RecordingDevice(Tunable(), rec, 1)
        dev.phase = "other"
        dev.query(torch.zeros(1, 2))
    with recording.open(path) as f:
        d = f.devices[1]
        assert d.query[:].tolist() == [0, 0, 1, 2] and d.phase[:].tolist() == [0, 0, 1, 2]
        assert d.settings == [recording.Setting(2, "gain", (3.0,))]
        assert np.array_equal(d.outputs[:], [[1, 1], [1, 1], [3, 3], [0, 0]])
