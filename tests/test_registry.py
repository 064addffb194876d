"""Finding devices by name: built-ins and the ``phys.devices`` entry-point group."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import pytest
import torch

import phys
import phys.registry
from phys.device import Device, DeviceInfo
from phys.simulators.cavity import Cavity


class ThirdParty(Device):
    """Stands in for a device shipped by a plugin package."""

    def __init__(self, n_in: int = 2, *, gain: float = 1.0) -> None:
        super().__init__()
        self.gain = gain
        self.info = DeviceInfo(name="thirdparty", n_in=n_in, n_out=n_in, in_min=0.0,
                               in_max=1.0, max_batch=4)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class NotADevice:
    def __init__(self, **options: object) -> None:
        self.options = options


def fake_plugins(monkeypatch: pytest.MonkeyPatch, **targets: str) -> None:
    eps = [EntryPoint(name=name, value=f"{__name__}:{attr}", group=phys.registry.ENTRY_POINT_GROUP)
           for name, attr in targets.items()]

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return eps if group == phys.registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(phys.registry, "entry_points", fake_entry_points)


def test_open_cavity() -> None:
    with phys.open("cavity", n_in=3, n_out=2, n_scatterers=4, seed=1) as dev:
        assert isinstance(dev, Device) and isinstance(dev, Cavity)
        assert (dev.info.name, dev.info.n_in, dev.info.n_out) == ("cavity", 3, 2)
        assert dev.query(torch.zeros(3)).shape == (2,)


def test_open_is_phys_registry_open() -> None:
    assert phys.open is phys.registry.open


def test_unknown_name_lists_known_devices() -> None:
    with pytest.raises(ValueError, match=r"unknown device 'nope'.*cavity"):
        phys.open("nope")


@pytest.mark.parametrize("options", [{"bogus": 1}, {"n_scatterers": 0}, {"coupling": 1.5}])
def test_bad_options_are_value_errors(options: dict) -> None:
    with pytest.raises(ValueError):
        phys.open("cavity", **options)


def test_unknown_keyword_names_device_and_option() -> None:
    with pytest.raises(ValueError, match=r"device 'cavity' has no option 'bogus'; it accepts: "
                                         r"n_in, n_out, n_scatterers"):
        phys.open("cavity", bogus=1)


def test_spec_is_resolved_once_and_opens_with_declared_sizes() -> None:
    spec = phys.DeviceSpec.parse("cavity", {"n_scatterers": 8})
    assert spec.sizes == ("n_in", "n_out", "seed")
    with spec.open(n_in=3, n_out=2, seed=1) as dev:
        assert (dev.info.n_in, dev.info.n_out) == (3, 2)
    assert spec.describe(n_in=5).n_in == 5


def test_spec_of_unknown_name_fails_when_made() -> None:
    with pytest.raises(ValueError, match="unknown device 'nosuch'; known devices: cavity"):
        phys.DeviceSpec.parse("nosuch")


def test_fixed_size_device_is_not_given_sizes() -> None:
    class Fixed(phys.Device):
        def __init__(self) -> None:
            super().__init__()
            self.info = phys.DeviceInfo("fixed", 2, 2, 0.0, 1.0, 4)

        def _query(self, x):
            return x

    spec = phys.DeviceSpec("fixed", {}, Fixed, ())
    with spec.open(n_in=7, n_out=7, seed=3) as dev:  # sizes it does not declare: left out
        assert dev.info.n_in == 2


@pytest.mark.parametrize("spec", ["", None, 3])
def test_empty_or_non_string_spec(spec: object) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        phys.open(spec)  # type: ignore[arg-type]


def test_available_includes_cavity_and_is_sorted() -> None:
    known = phys.registry.available()
    assert known["cavity"] == "phys.simulators.cavity:Cavity"
    assert list(known) == sorted(known)
    assert phys.registry.load("cavity") is Cavity


def test_installed_entry_point_group_has_cavity() -> None:
    eps = {ep.name: ep for ep in entry_points(group="phys.devices")}
    assert "cavity" in eps, "reinstall with `pip install -e .` to register entry points"
    assert eps["cavity"].value == "phys.simulators.cavity:Cavity"
    assert eps["cavity"].load() is Cavity


def test_third_party_entry_point_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_plugins(monkeypatch, thirdparty="ThirdParty")
    assert "thirdparty" in phys.registry.available()
    assert "cavity" in phys.registry.available()  # built-ins stay without entry points
    with phys.open("thirdparty", n_in=3, gain=2.0) as dev:
        assert isinstance(dev, ThirdParty) and dev.gain == 2.0
        torch.testing.assert_close(dev.query(torch.full((3,), 0.5)), torch.ones(3))
    with pytest.raises(ValueError, match="thirdparty"):
        phys.open("nope")


def test_third_party_cannot_shadow_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_plugins(monkeypatch, cavity="ThirdParty")
    assert phys.registry.load("cavity") is Cavity


def test_entry_point_that_is_not_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_plugins(monkeypatch, notadevice="NotADevice")
    with pytest.raises(TypeError, match="not a phys.Device"):
        phys.open("notadevice")
