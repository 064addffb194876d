"""A device that refuses a physical setting mid-run: the run stops cleanly, saved as it
was before the step, with an error naming layer, parameter and value; it resumes."""

from __future__ import annotations

import pytest
import torch

from phys.devices.wrappers import Wrapper
from phys.experiment import TrainSpec, open_layer_device
from phys.runs import SettingRefused, train

SPEC = dict(data="digits", layers=1, hidden=16, measurements=8, epochs=2, batch_size=64,
            subset=256, negatives="random", train_physics="spsa", physics_directions=1)


class Refusing(Wrapper):
    """Refuses SET number ``refuse`` (counting from 1), takes every other."""

    def __init__(self, device, refuse):
        super().__init__(device)
        self.refuse, self.sets = refuse, 0

    def set(self, name, values):
        self.sets += 1
        if self.sets == self.refuse:
            raise RuntimeError("ERROR 4: the rig refused the value")
        super().set(name, values)

    def _query(self, x):
        return self.device.query(x)


def test_a_refused_setting_stops_the_run_saved_and_it_resumes(tmp_path):
    out = tmp_path / "run"

    def refusing(device, n_in, n_out, seed, options=None):
        return Refusing(open_layer_device(device, n_in, n_out, seed, options), refuse=10)

    with pytest.raises(SettingRefused) as caught:
        train(TrainSpec(**SPEC), out=out, opener=refusing, tensorboard=False,
              checkpoint_every=1)
    message = str(caught.value)
    assert "layer 0: device 'cavity' refused parameter 'phase' = [" in message
    assert "ERROR 4: the rig refused the value" in message
    assert f"the run is saved in {out} as it was before this step" in message
    # each step sets 2 perturbations and the result: the 4th step is refused, 3 are done
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["progress"]["batches"] == 3 and state["physics"]["steps"] == [3]
    resumed = train(TrainSpec(**SPEC), out=out, resume=True, tensorboard=False)
    want = train(TrainSpec(**SPEC), out=tmp_path / "whole", tensorboard=False)
    assert resumed["physics"]["values"] == want["physics"]["values"]
    assert resumed["test_accuracy"] == want["test_accuracy"]
