"""Argument checks shared by the simulators: ``ValueError`` naming the parameter."""

from __future__ import annotations

import math

__all__ = ["check_int", "check_number"]


def check_int(minimum: int, **values: int) -> None:
    """Each value must be an ``int`` (not ``bool``) ``>= minimum``."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{key} must be an int >= {minimum}, got {value!r}")


def check_number(rule: str, **values: float) -> None:
    """``rule`` is ``">0"`` or ``">=0"``; NaN, Inf and non-numbers are refused."""
    for key, value in values.items():
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value) and (value > 0 if rule == ">0" else value >= 0))
        if not ok:
            word = "a positive number" if rule == ">0" else "a number >= 0"
            raise ValueError(f"{key} must be {word}, got {value!r}")
