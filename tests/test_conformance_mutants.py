"""Every conformance check catches its own mutant: a tiny correct device, broken in one way.

Each mutant names the check it ``breaks`` and the checks it ``also`` breaks (a device that
answers in the wrong shape cannot be compared with anything); the test asserts that
exactly those checks fail. A check without a mutant fails the suite.
"""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch

import phys
from phys.device import DeviceInfo, ParamSpec
from phys.simulators.params import check_value
from phys.testing import CHECKS, ConformanceError, NotApplicable


class Tiny(phys.Device):
    """A correct device that every check applies to: ``y = tanh(x @ W + b)``,
    deterministic, differentiable (exact vjp), recoverable, with one parameter ``bias``
    (``b``) that ``set`` and ``get`` change and read."""

    breaks = ""
    also: frozenset[str] = frozenset()

    def __init__(self, seed: int = 0, max_batch: int = 8) -> None:
        super().__init__()
        self.info = self.make_info(max_batch)
        gen = torch.Generator().manual_seed(seed)
        self.w = torch.randn(3, 2, generator=gen)
        self.b = torch.full((2,), 0.1)
        self.reopens = 0

    def make_info(self, max_batch: int) -> DeviceInfo:
        return DeviceInfo("tiny", n_in=3, n_out=2, in_min=-1.0, in_max=2.0,
                          max_batch=max_batch, differentiable=True, recoverable=True,
                          params=(ParamSpec("bias", (2,), -1.0, 1.0, units="V"),),
                          extra={"units": "V in, V out"})

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w + self.b)

    def vjp(self, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64)
        y = torch.tanh(x @ self.w.double() + self.b.double())
        return (grad_out.double() * (1 - y**2)) @ self.w.double().T

    def reopen(self) -> None:
        self.reopens += 1

    def spec(self, name: str) -> ParamSpec:
        for p in self.info.params:
            if p.name == name:
                return p
        raise ValueError(f"tiny has no parameter {name!r}")

    def set(self, name: str, values) -> None:
        self.b = check_value("tiny", self.spec(name), values, torch.float32).detach()

    def get(self, name: str) -> torch.Tensor:
        self.spec(name)
        return self.b.clone()


# -- what a device declares -------------------------------------------------------------------

class InfoIsNotDeviceInfo(Tiny):
    breaks, also = "info", frozenset({"info-json"})

    def make_info(self, max_batch: int) -> types.SimpleNamespace:
        info = super().make_info(max_batch)
        return types.SimpleNamespace(**{f.name: getattr(info, f.name)
                                        for f in dataclasses.fields(info)})


class InfoWithTuple(Tiny):
    """``extra`` holds a tuple: JSON reads it back as a list."""

    breaks = "info-json"

    def make_info(self, max_batch: int) -> DeviceInfo:
        return dataclasses.replace(super().make_info(max_batch), extra={"grid": (4, 4)})


class InfoNotSerialisable(Tiny):
    breaks = "info-json"

    def make_info(self, max_batch: int) -> DeviceInfo:
        return dataclasses.replace(super().make_info(max_batch), extra={"gain": {1.0}})


class ParamMinAboveMax(Tiny):
    """(Such a parameter cannot be read back from JSON either, nor set to a value in
    its range.)"""

    breaks, also = "declared-params", frozenset({"info-json", "params-round-trip"})

    def make_info(self, max_batch: int) -> DeviceInfo:
        info = super().make_info(max_batch)
        object.__setattr__(info.params[0], "min", 2.0)
        return info


class ParamNotParamSpec(Tiny):
    breaks = "declared-params"
    also = frozenset({"info-json", "params-round-trip", "params-reject"})

    def make_info(self, max_batch: int) -> DeviceInfo:
        info = super().make_info(max_batch)
        object.__setattr__(info, "params", (("bias", (2,), -1.0, 1.0),))
        return info


# -- what query answers ------------------------------------------------------------------------

class DropsAColumn(Tiny):
    breaks = "shape"
    also = frozenset({"single", "range-inclusive", "empty", "batch-split", "vjp"})

    def query(self, x):
        return super().query(x)[..., :-1]


class Float64Out(Tiny):
    breaks, also = "dtype", frozenset({"result-device"})

    def query(self, x):
        return super().query(x).double()


class NaNOut(Tiny):
    """Answers NaN for inputs whose first value is above the middle of the range."""

    breaks = "finite"
    also = frozenset({"deterministic", "batch-independence", "batch-split", "vjp", "reopen",
                      "seeded"})

    def query(self, x):
        y = super().query(x)
        x = torch.as_tensor(x)
        return torch.where(x[..., :1] > 0.5, torch.nan, y) if y.numel() else y


class SingleKeepsBatchDim(Tiny):
    breaks, also = "single", frozenset({"batch-independence"})

    def query(self, x):
        y = super().query(x)
        return y.unsqueeze(0) if y.ndim == 1 else y


class KeepsGraph(Tiny):
    breaks = "no-grad"

    def query(self, x):
        y = super().query(x)
        return y + 0 * x.sum() if torch.is_tensor(x) and x.requires_grad else y


class SingleOnMeta(Tiny):
    """Answers single vectors on another torch device than the input's."""

    breaks, also = "result-device", frozenset({"batch-independence"})

    def query(self, x):
        y = super().query(x)
        return y.to("meta") if y.ndim == 1 else y


class RefusesInMax(Tiny):
    breaks = "range-inclusive"

    def query(self, x):
        if torch.is_tensor(x) and x.is_floating_point() and bool((x == 2.0).any()):
            raise ValueError("in_max refused")
        return super().query(x)


class EmptyIsOneD(Tiny):
    breaks = "empty"

    def query(self, x):
        y = super().query(x)
        return y.reshape(0) if y.numel() == 0 else y


class CountsSamplesTwice(Tiny):
    breaks = "stats"

    def query(self, x):
        y = super().query(x)
        self.stats.samples += len(y) if y.ndim == 2 else 1
        return y


# -- bad input ---------------------------------------------------------------------------------

class Repairs(Tiny):
    """Base of the mutants that repair one kind of bad input instead of refusing it."""

    def repair(self, x: torch.Tensor) -> object:
        return x

    def query(self, x):
        return super().query(self.repair(x))


class LetsNaNThrough(Repairs):
    breaks = "reject-nan"

    def repair(self, x):
        return torch.nan_to_num(x, nan=0.0, posinf=torch.inf, neginf=-torch.inf) \
            if torch.is_tensor(x) and x.is_floating_point() else x


class LetsInfThrough(Repairs):
    breaks = "reject-inf"

    def repair(self, x):
        return torch.nan_to_num(x, nan=torch.nan, posinf=2.0, neginf=-1.0) \
            if torch.is_tensor(x) and x.is_floating_point() else x


class ClampsHigh(Repairs):
    breaks = "reject-above-range"

    def repair(self, x):
        if not (torch.is_tensor(x) and x.is_floating_point()):
            return x
        return torch.where(torch.isfinite(x), x.clamp(max=2.0), x)


class ClampsLow(Repairs):
    breaks = "reject-below-range"

    def repair(self, x):
        if not (torch.is_tensor(x) and x.is_floating_point()):
            return x
        return torch.where(torch.isfinite(x), x.clamp(min=-1.0), x)


class DropsExtraColumns(Repairs):
    breaks = "reject-wrong-width"

    def repair(self, x):
        return x[..., :3] if torch.is_tensor(x) and x.ndim > 0 else x


class Flattens3d(Repairs):
    breaks = "reject-3d"

    def repair(self, x):
        return x.reshape(-1, 3) if torch.is_tensor(x) and x.ndim == 3 else x


class BroadcastsScalar(Repairs):
    breaks = "reject-scalar"

    def repair(self, x):
        return x.expand(3) if torch.is_tensor(x) and x.ndim == 0 else x


class CastsIntegers(Repairs):
    breaks = "reject-int-dtype"

    def repair(self, x):
        bad = torch.is_tensor(x) and not x.is_floating_point() and not x.is_complex()
        return x.float() if bad else x


class TakesRealPart(Repairs):
    breaks = "reject-complex-dtype"

    def repair(self, x):
        return x.real if torch.is_tensor(x) and x.is_complex() else x


class ZerosForNonArrays(Repairs):
    breaks = "reject-non-array"

    def repair(self, x):
        return torch.zeros(1, 3) if isinstance(x, str) else x


class CountsBeforeValidating(Tiny):
    """Counts a round trip before validating: bad input 'reaches the device'."""

    breaks = "reject-nan"
    also = frozenset({name for name in CHECKS if name.startswith("reject-")} - {"reject-nan"}
                     | {"stats", "batch-split"})

    def query(self, x):
        self.stats.queries += 1
        return super().query(x)


# -- repeatability ---------------------------------------------------------------------------

class DriftsPerQuery(Tiny):
    """Declares itself deterministic but drifts by 1e-6 with every query."""

    breaks, also = "deterministic", frozenset({"reopen"})

    def _query(self, x):
        self.b = self.b + 1e-6
        return super()._query(x)


class BatchDependent(Tiny):
    """Each row's answer moves with the mean of its batch."""

    breaks, also = "batch-independence", frozenset({"batch-split", "vjp"})

    def _query(self, x):
        return super()._query(x) + 0.1 * x.mean(0).sum()


class IgnoresMaxBatch(Tiny):
    breaks = "batch-split"

    def query(self, x):
        max_batch = self.info.max_batch
        object.__setattr__(self.info, "max_batch", 1 << 30)
        try:
            return super().query(x)
        finally:
            object.__setattr__(self.info, "max_batch", max_batch)


class Unseeded(Tiny):
    """Draws its weights from the global random state: no two devices agree."""

    breaks = "seeded"

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.randn(3, 2)


class WrongVjp(Tiny):
    breaks = "vjp"

    def vjp(self, x, grad_out):
        return 1.1 * super().vjp(x, grad_out)


# -- physical parameters -------------------------------------------------------------------

class GetIgnoresSet(Tiny):
    """``get`` reports the power-up value whatever was set."""

    breaks = "params-round-trip"

    def get(self, name: str) -> torch.Tensor:
        self.spec(name)
        return torch.full((2,), 0.1)


class SetKeepsAHalf(Tiny):
    """``set`` moves only half-way to the asked value (a slow actuator declared done)."""

    breaks = "params-round-trip"

    def set(self, name: str, values) -> None:
        old = self.b
        super().set(name, values)
        self.b = (old + self.b) / 2


class ClampsSettings(Tiny):
    """Clamps a setting into its range instead of refusing it."""

    breaks = "params-reject"

    def set(self, name: str, values) -> None:
        spec = self.spec(name)
        super().set(name, torch.as_tensor(values, dtype=torch.float64).nan_to_num(0.0)
                    .clamp(spec.min, spec.max).reshape(-1)[:2])


# -- life ------------------------------------------------------------------------------------

class ReopenSilently(Tiny):
    """Declares itself not recoverable, yet ``reopen()`` returns as if it worked."""

    breaks = "reopen"

    def make_info(self, max_batch: int) -> DeviceInfo:
        return dataclasses.replace(super().make_info(max_batch), recoverable=False)


class ReopenForgetsSettings(Tiny):
    breaks = "reopen"

    def reopen(self) -> None:
        super().reopen()
        self.b = torch.zeros(2)


class EnterReturnsNone(Tiny):
    breaks = "context-manager"

    def __enter__(self):
        return None


class CloseDoesNotStop(Tiny):
    breaks = "close"

    def query(self, x):
        closed, self._closed = self._closed, False
        try:
            return super().query(x)
        finally:
            self._closed = closed


def mutants() -> list[type[Tiny]]:
    found, todo = [], [Tiny]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.breaks:
                found.append(sub)
    return sorted(found, key=lambda m: m.__name__)


def failing(factory) -> set[str]:
    """Names of the checks of CHECKS that fail on devices opened by ``factory``."""
    failed = set()
    for name, check in CHECKS.items():
        try:
            check(factory)
        except ConformanceError:
            failed.add(name)
        except NotApplicable as reason:
            raise AssertionError(f"{name} skipped the tiny device: {reason}") from None
    return failed


def test_the_tiny_device_passes_every_check() -> None:
    assert failing(Tiny) == set()


def test_every_check_has_a_mutant() -> None:
    caught = {m.breaks for m in mutants()}
    assert set(CHECKS) - caught == set(), "checks without a mutant"
    assert caught - set(CHECKS) == set(), "mutants of checks that do not exist"


@pytest.mark.parametrize("mutant", mutants(), ids=lambda m: f"{m.breaks}-{m.__name__}")
def test_each_check_catches_its_mutant(mutant: type[Tiny]) -> None:
    with pytest.raises(ConformanceError, match=f"^{mutant.breaks}: "):
        CHECKS[mutant.breaks](mutant)
    assert failing(mutant) == {mutant.breaks} | mutant.also
