"""One pytest case per (device, check): :func:`parametrize_with_checks`.

pytest is imported only when the decorator is made or a case runs, so ``phys.testing``
imports without it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from phys.testing.core import Check, DeviceFactory, NotApplicable
from phys.testing.suite import CHECKS

__all__ = ["parametrize_with_checks"]


class PytestCheck:
    """A :class:`~phys.testing.core.Check` that, inside a pytest case, turns "does not
    apply" into a skip with the reason."""

    def __init__(self, check: Check) -> None:
        self.check = check
        self.name = check.name

    def __repr__(self) -> str:
        return f"<check {self.name!r}>"

    def __call__(self, device_factory: DeviceFactory) -> None:
        try:
            self.check(device_factory)
        except NotApplicable as reason:
            import pytest

            pytest.skip(str(reason))


def _label(factory: Any) -> str:
    """A readable id: a partial's leading string argument (a device name), else the
    callable's name."""
    if isinstance(factory, functools.partial):
        if factory.args and isinstance(factory.args[0], str):
            return re.sub(r"[^A-Za-z0-9_.-]+", "-", factory.args[0])
        return _label(factory.func)
    name = getattr(factory, "__name__", None)
    if not name or name == "<lambda>":
        raise ValueError(f"cannot name the device factory {factory!r}; pass a mapping "
                         f"{{id: factory}} instead")
    return name.lower()


def _named(factories: Mapping[str, DeviceFactory] | Sequence[DeviceFactory],
           ) -> dict[str, DeviceFactory]:
    if isinstance(factories, Mapping):
        named = dict(factories)
    else:
        named = {}
        for factory in factories:
            label = _label(factory)
            if label in named:
                raise ValueError(f"factories: two are called {label!r}; pass a mapping "
                                 f"{{id: factory}} instead")
            named[label] = factory
    if not named:
        raise ValueError("factories must name at least one device factory")
    for label, factory in named.items():
        if not isinstance(label, str) or not label:
            raise ValueError(f"factories: ids must be non-empty strings, got {label!r}")
        if not callable(factory):
            raise ValueError(f"factories[{label!r}] must be a callable that opens a device, "
                             f"got {type(factory).__name__}")
    return named


def parametrize_with_checks(
    factories: Mapping[str, DeviceFactory] | Sequence[DeviceFactory],
) -> Any:
    """A pytest decorator: one test case per (device, check), with ids like
    ``cavity-reject-nan``, so every broken promise of every device shows at once.

    The decorated test takes ``device_factory`` and ``check`` and calls
    ``check(device_factory)``: a fresh device is opened, checked and closed; a check that
    does not apply by the device's info is skipped with the reason.

    Args:
        factories: ``{id: factory}``, or factories named after themselves (a class, a
            function, or a :func:`functools.partial` whose first argument is the device
            name). A factory opens a fresh device with fixed settings each time.

    Returns:
        A ``pytest.mark.parametrize`` mark.

    Raises:
        ValueError: no factories, an id that is not a non-empty string, a factory that is
            not callable, or two factories with the same derived id.

    Examples::

        from functools import partial
        import phys
        from phys.testing import parametrize_with_checks

        @parametrize_with_checks({"cavity": partial(phys.open, "cavity", n_in=4, n_out=3)})
        def test_device_conforms(device_factory, check):
            check(device_factory)
    """
    import pytest

    params = [pytest.param(factory, PytestCheck(chk), id=f"{label}-{name}")
              for label, factory in _named(factories).items()
              for name, chk in CHECKS.items()]
    return pytest.mark.parametrize(("device_factory", "check"), params)
