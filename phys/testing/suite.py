"""The named checks in the order they run, and :func:`check_device`, which runs them all."""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType

from phys.device import Device, DeviceInfo
from phys.testing import (
    answer_checks,
    gradient_checks,
    info_checks,
    lifecycle_checks,
    param_checks,
    rejection_checks,
    repeatability_checks,
)
from phys.testing.core import Check, CheckContext, ConformanceError, DeviceFactory, NotApplicable

__all__ = ["CHECKS", "check_device", "device_checks"]

_IN_ORDER: tuple[Check, ...] = (
    info_checks.check_info,
    info_checks.check_info_json,
    info_checks.check_declared_params,
    answer_checks.check_shape,
    answer_checks.check_dtype,
    answer_checks.check_finite,
    answer_checks.check_single,
    answer_checks.check_no_grad,
    answer_checks.check_result_device,
    answer_checks.check_range_inclusive,
    rejection_checks.check_reject_nan,
    rejection_checks.check_reject_inf,
    rejection_checks.check_reject_above_range,
    rejection_checks.check_reject_below_range,
    rejection_checks.check_reject_wrong_width,
    rejection_checks.check_reject_3d,
    rejection_checks.check_reject_scalar,
    rejection_checks.check_reject_int_dtype,
    rejection_checks.check_reject_complex_dtype,
    rejection_checks.check_reject_non_array,
    answer_checks.check_empty,
    answer_checks.check_stats,
    repeatability_checks.check_deterministic,
    repeatability_checks.check_batch_independence,
    repeatability_checks.check_batch_split,
    repeatability_checks.check_seeded,
    gradient_checks.check_vjp,
    param_checks.check_params_round_trip,
    param_checks.check_params_reject,
    # these change the device's state, so they run last on a shared device
    lifecycle_checks.check_reopen,
    lifecycle_checks.check_context_manager,
    lifecycle_checks.check_close,
)

#: Every check by name, in the order :func:`check_device` runs them (read-only).
CHECKS: MappingProxyType[str, Check] = MappingProxyType({c.name: c for c in _IN_ORDER})


def device_checks(info: DeviceInfo, *, has_factory: bool = True,
                  ) -> Iterator[tuple[str, Check]]:
    """The checks that apply to a device with ``info``, as ``(name, check)``.

    Args:
        info: The device's declared info.
        has_factory: Whether a second device can be opened (for the ``seeded`` check).

    Examples::

        >>> import phys
        >>> info = phys.DeviceInfo("rig", n_in=2, n_out=2, in_min=0.0, in_max=1.0,
        ...                        max_batch=8, stochastic=True)
        >>> names = [name for name, _ in device_checks(info)]
        >>> "reject-nan" in names, "deterministic" in names, "vjp" in names
        (True, False, False)
    """
    for name, chk in CHECKS.items():
        if chk.skip_reason(info, has_factory=has_factory) is None:
            yield name, chk


def check_device(device: Device, *, reopen: DeviceFactory | None = None,
                 seed: int = 0) -> list[str]:
    """Run every check of :data:`CHECKS` on ``device``, in order, and close it.

    Checks that do not apply by the device's info are skipped. Every check runs, so one
    error lists every broken promise.

    Args:
        device: An open device. It is closed when the checks finish.
        reopen: Optional factory of a fresh device with the same settings: a device that is
            not stochastic must answer as ``device`` does (the ``seeded`` check).
        seed: Seeds the random test inputs.

    Returns:
        Names of the checks that ran and passed.

    Raises:
        ConformanceError: listing each failed check and what went wrong; its ``failures``
            maps their names to the messages.

    Examples::

        >>> import phys
        >>> from functools import partial
        >>> opener = partial(phys.open, "cavity", n_in=4, n_out=3, seed=1)
        >>> passed = check_device(opener(), reopen=opener)
        >>> "reject-nan" in passed and "seeded" in passed
        True
    """
    if not isinstance(device, Device):
        raise ValueError(f"device must be a phys.Device, got {type(device).__name__}")
    context = CheckContext(seed=seed, factory=reopen)
    passed: list[str] = []
    failures: dict[str, str] = {}
    try:
        for name, chk in CHECKS.items():
            try:
                chk.run_on(device, context)
            except NotApplicable:
                continue
            except ConformanceError as err:
                failures[name] = str(err)
            else:
                passed.append(name)
    finally:
        device.close()
    if failures:
        lines = "\n".join(f"  {message}" for message in failures.values())
        name = getattr(getattr(device, "info", None), "name", type(device).__name__)
        raise ConformanceError(f"device {name!r} failed {len(failures)} of "
                               f"{len(failures) + len(passed)} checks:\n{lines}", failures)
    return passed
