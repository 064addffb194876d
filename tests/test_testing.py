"""The shipped conformance suite as an API: check_device, the named checks, the registry
and parametrize_with_checks. (Each check's own mutant is in test_conformance_mutants.py.)"""

from __future__ import annotations

import subprocess
import sys
from functools import partial

import pytest
import torch

import phys
from phys.device import Device, DeviceInfo
from phys.simulators.cavity import Cavity
from phys.testing import (
    CHECKS,
    ConformanceError,
    NotApplicable,
    check_device,
    check_reject_nan,
    check_seeded,
    check_vjp,
    device_checks,
    parametrize_with_checks,
)

CAVITY = dict(n_in=6, n_out=5, n_scatterers=16, max_batch=32, seed=3)


class Good(Device):
    """A correct deterministic device: ``y = tanh(x @ W)``."""

    def __init__(self, seed: int = 0, max_batch: int = 8) -> None:
        super().__init__()
        self.info = DeviceInfo(name="good", n_in=3, n_out=2, in_min=0.0, in_max=2.0,
                               max_batch=max_batch)
        self.w = torch.randn(3, 2, generator=torch.Generator().manual_seed(seed))

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w)


class ClipsAndDoesNotClose(Good):
    """Two broken promises: clips out-of-range inputs, answers after close()."""

    def query(self, x):
        if torch.is_tensor(x) and x.is_floating_point():
            x = torch.where(torch.isfinite(x), x.clamp(0.0, 2.0), x)
        closed, self._closed = self._closed, False
        try:
            return super().query(x)
        finally:
            self._closed = closed


def test_good_device_passes_and_skips_what_does_not_apply() -> None:
    passed = check_device(Good(), reopen=Good)
    assert {"shape", "no-grad", "reject-nan", "deterministic", "batch-split", "seeded",
            "info-json", "result-device", "reopen", "close"} <= set(passed)
    # not differentiable, no parameters: those checks are skipped, not passed
    assert set(CHECKS) - set(passed) == {"vjp", "declared-params", "params-round-trip",
                                         "params-reject"}


def test_check_device_lists_every_failed_check() -> None:
    with pytest.raises(ConformanceError) as caught:
        check_device(ClipsAndDoesNotClose())
    assert set(caught.value.failures) == {"reject-above-range", "reject-below-range", "close"}
    message = str(caught.value)
    assert message.startswith("device 'good' failed 3 of ")
    for name, detail in caught.value.failures.items():
        assert detail.startswith(f"{name}: ") and detail in message


def test_check_device_closes_the_device_even_when_checks_fail() -> None:
    dev = ClipsAndDoesNotClose()
    with pytest.raises(ConformanceError):
        check_device(dev)
    assert dev.closed


def test_check_device_needs_a_device() -> None:
    with pytest.raises(ValueError, match="device must be a phys.Device"):
        check_device(Good)  # type: ignore[arg-type]


def test_reopen_with_other_seed_is_caught() -> None:
    with pytest.raises(ConformanceError) as caught:
        check_device(Good(seed=0), reopen=partial(Good, seed=1))
    assert set(caught.value.failures) == {"seeded"}


def test_good_device_with_small_max_batch_passes() -> None:
    assert "batch-split" in check_device(Good(max_batch=4))


def test_one_check_on_a_device_leaves_it_open_and_on_a_factory_closes_its_own() -> None:
    dev = Good()
    check_reject_nan(dev)
    assert not dev.closed
    opened = []

    def factory() -> Good:
        opened.append(Good())
        return opened[-1]

    check_reject_nan(factory)
    assert len(opened) == 1 and opened[0].closed


def test_a_check_that_does_not_apply_says_why() -> None:
    with pytest.raises(NotApplicable, match="^vjp: not info.differentiable"):
        check_vjp(Good)
    with pytest.raises(NotApplicable, match="^seeded: no factory"):
        check_seeded(Good())
    check_seeded(Good(), reopen=Good)  # a factory makes it apply


def test_a_check_rejects_what_is_not_a_device_or_factory() -> None:
    with pytest.raises(ValueError, match="callable that opens one"):
        check_reject_nan(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="returned str, not a phys.Device"):
        check_reject_nan(lambda: "cavity")  # type: ignore[arg-type,return-value]


def test_an_unexpected_exception_is_a_failure_of_the_check() -> None:
    class Crashes(Good):
        def _query(self, x):
            raise OSError("cable")

    with pytest.raises(ConformanceError, match="^shape: raised OSError: cable"):
        CHECKS["shape"](Crashes)


def test_device_checks_follow_the_declared_info() -> None:
    info = Cavity(**CAVITY).info
    names = [name for name, _ in device_checks(info)]
    assert names == list(CHECKS)  # the cavity declares its parameters: every check applies
    stochastic = DeviceInfo("rig", 2, 2, 0.0, 1.0, max_batch=4, stochastic=True)
    names = {name for name, _ in device_checks(stochastic, has_factory=False)}
    assert {"deterministic", "batch-independence", "seeded", "vjp"}.isdisjoint(names)
    assert {"batch-split", "reject-nan", "reopen", "close"} <= names
    huge = DeviceInfo("rig", 2, 2, 0.0, 1.0, max_batch=1 << 20)
    assert "batch-split" not in dict(device_checks(huge))


def test_checks_are_named_and_exported() -> None:
    for name, check in CHECKS.items():
        assert check.name == name
        assert getattr(phys.testing, "check_" + name.replace("-", "_")) is check
        assert check.__doc__


def test_parametrize_with_checks_makes_one_case_per_device_and_check() -> None:
    mark = parametrize_with_checks({"good": Good, "cavity": partial(Cavity, **CAVITY)})
    assert mark.args[0] == ("device_factory", "check")
    ids = [p.id for p in mark.args[1]]
    assert len(ids) == 2 * len(CHECKS) and len(set(ids)) == len(ids)
    assert {"good-reject-nan", "cavity-vjp", "cavity-close"} <= set(ids)


def test_parametrize_with_checks_derives_ids() -> None:
    mark = parametrize_with_checks([Good, partial(phys.open, "pennylane:default.qubit")])
    ids = {p.id for p in mark.args[1]}
    assert {"good-shape", "pennylane-default.qubit-shape"} <= ids
    with pytest.raises(ValueError, match="cannot name"):
        parametrize_with_checks([lambda: Good()])
    with pytest.raises(ValueError, match="two are called 'good'"):
        parametrize_with_checks([Good, Good])
    with pytest.raises(ValueError, match="at least one"):
        parametrize_with_checks({})
    with pytest.raises(ValueError, match=r"factories\['x'\] must be a callable"):
        parametrize_with_checks({"x": 3})


def test_a_parametrized_case_skips_with_the_reason() -> None:
    (case,) = [p for p in parametrize_with_checks([Good]).args[1] if p.id == "good-vjp"]
    factory, check = case.values
    with pytest.raises(pytest.skip.Exception, match="not info.differentiable"):
        check(factory)


@parametrize_with_checks({"cavity": partial(Cavity, **CAVITY),
                          "noisy-cavity": partial(Cavity, **CAVITY, noise=0.05)})
def test_cavities_conform(device_factory, check) -> None:
    check(device_factory)


def test_phys_testing_imports_without_pytest() -> None:
    code = ("import sys; sys.modules['pytest'] = None; import torch, phys; "
            "from phys.testing import check_device, parametrize_with_checks; "
            "print(phys.testing.check_device is check_device)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True"
