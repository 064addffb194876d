"""Conformance suite for devices, shipped in the package.

Every device - in this project or in a plugin - should pass :func:`check_device`::

    from phys.testing import check_device
    check_device(MyDevice(), reopen=MyDevice)

which runs every named check of :data:`CHECKS` (``shape``, ``reject-nan``, ``vjp``,
``params-round-trip``, ``close``, ...), skips those that do not apply by the device's
declared info (no ``vjp`` for a device that is not differentiable, no determinism for a
stochastic one, no ``params-*`` without ``info.params``), and raises one
:class:`ConformanceError` listing each failed check. In a test suite,
:func:`parametrize_with_checks` makes one pytest case per (device, check)::

    @parametrize_with_checks({"mydevice": MyDevice})
    def test_mydevice_conforms(device_factory, check):
        check(device_factory)

Each check is also a function of its own, e.g. ``check_reject_nan(MyDevice)``.
"""

from phys.testing.answer_checks import (
    check_dtype,
    check_empty,
    check_finite,
    check_no_grad,
    check_range_inclusive,
    check_result_device,
    check_shape,
    check_single,
    check_stats,
)
from phys.testing.core import Check, CheckContext, ConformanceError, DeviceFactory, NotApplicable
from phys.testing.gradient_checks import check_vjp
from phys.testing.info_checks import check_declared_params, check_info, check_info_json
from phys.testing.lifecycle_checks import check_close, check_context_manager, check_reopen
from phys.testing.param_checks import check_params_reject, check_params_round_trip
from phys.testing.parametrize import parametrize_with_checks
from phys.testing.rejection_checks import (
    check_reject_3d,
    check_reject_above_range,
    check_reject_below_range,
    check_reject_complex_dtype,
    check_reject_inf,
    check_reject_int_dtype,
    check_reject_nan,
    check_reject_non_array,
    check_reject_scalar,
    check_reject_wrong_width,
)
from phys.testing.repeatability_checks import (
    check_batch_independence,
    check_batch_split,
    check_deterministic,
    check_seeded,
)
from phys.testing.suite import CHECKS, check_device, device_checks

__all__ = [
    "CHECKS", "Check", "CheckContext", "ConformanceError", "DeviceFactory", "NotApplicable",
    "check_batch_independence", "check_batch_split", "check_close", "check_context_manager",
    "check_declared_params", "check_deterministic", "check_device", "check_dtype",
    "check_empty", "check_finite", "check_info", "check_info_json", "check_no_grad",
    "check_params_reject", "check_params_round_trip",
    "check_range_inclusive", "check_reject_3d", "check_reject_above_range",
    "check_reject_below_range", "check_reject_complex_dtype", "check_reject_inf",
    "check_reject_int_dtype", "check_reject_nan", "check_reject_non_array",
    "check_reject_scalar", "check_reject_wrong_width", "check_reopen",
    "check_result_device", "check_seeded", "check_shape", "check_single", "check_stats",
    "check_vjp", "device_checks", "parametrize_with_checks",
]
