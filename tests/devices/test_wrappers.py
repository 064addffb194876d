import pytest
import torch

import phys
from phys.devices.wrappers import Drifting, DriftState, LinearDrift, Noisy, StepChange
from phys.testing import check_device


def cavity():
    return phys.open("cavity", n_in=6, n_out=5, n_scatterers=16)


def test_wrappers_pass_the_conformance_suite():
    assert "batch-split" in check_device(Noisy(cavity(), 0.01))
    assert "close" in check_device(Drifting(cavity(), LinearDrift(0.5, 0.1)))


def test_noise_statistics_and_relative_noise():
    x = torch.full((4000, 6), 0.5)
    clean = cavity().query(x)
    noisy = Noisy(cavity(), 0.1, seed=1).query(x)
    diff = noisy - clean
    assert abs(float(diff.mean())) < 0.01 and abs(float(diff.std()) - 0.1) < 0.01
    rel = Noisy(cavity(), 0.1, relative=True).query(x)
    assert torch.allclose(((rel - clean) / clean).std(), torch.tensor(0.1), atol=0.01)
    with pytest.raises(ValueError, match="sigma"):
        Noisy(cavity(), -1.0)


def test_wrapper_closes_inner_and_forwards_lab_cost():
    inner = cavity()
    dev = Noisy(inner, 0.0)
    dev.query(torch.zeros(3, 6))
    assert dev.stats.lab_seconds == pytest.approx(3 * inner.sample_seconds)
    dev.close()
    assert inner.closed


def test_step_change_happens_at_its_time():
    dev = Drifting(cavity(), StepChange(at=20, spread=0.5))
    x = torch.full((10, 6), 0.5)
    a, b, c = dev.query(x), dev.query(x), dev.query(x)
    assert torch.equal(a, b)  # t = 0, 10: before the step
    assert not torch.allclose(b, c)  # t = 20: after


def test_linear_drift_grows_with_time_and_follows_an_external_clock():
    now = {"t": 0.0}
    dev = Drifting(cavity(), LinearDrift(out_rate=0.2, scale=100.0), clock=lambda: now["t"])
    x = torch.full((8, 6), 0.5)
    y0 = dev.query(x)
    assert torch.equal(dev.query(x), y0)  # the clock has not moved
    now["t"] = 50.0
    y1 = dev.query(x)
    now["t"] = 100.0
    y2 = dev.query(x)
    d1, d2 = float((y1 - y0).abs().mean()), float((y2 - y0).abs().mean())
    assert d1 > 0 and d2 == pytest.approx(2 * d1, rel=1e-4)


def test_input_gain_is_clamped_to_the_device_range():
    seen = []

    class Probe(phys.Device):
        def __init__(self):
            super().__init__()
            self.info = phys.DeviceInfo("probe", 3, 3, 0.0, 1.0, max_batch=8)

        def _query(self, x):
            seen.append(x.clone())
            return x

    dev = Drifting(Probe(), lambda t, info: DriftState(in_gain=torch.tensor([3.0, 1.0, 0.5])))
    dev.query(torch.tensor([[0.9, 0.9, 0.9]]))
    assert torch.allclose(seen[-1], torch.tensor([[1.0, 0.9, 0.45]]))
