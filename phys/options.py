"""Options as data: one owner for every option's type, default, allowed values and help.

An options class is a dataclass whose fields are made with :func:`option`; subclass
:class:`Options` to have every field checked once, when the object is made, against its
type annotation, its allowed values and its bounds. The command line, the sweep schema
and the run configuration are generated from these fields, so an option's default and
allowed values are written only here.

Examples::

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Fit(Options):
    ...     epochs: int = option(10, help="passes over the data", min=1)
    ...     loss: str = option("mse", help="loss function", choices=("mse", "l1"))
    >>> Fit(epochs=3).epochs
    3
    >>> Fit(epochs=2.7)
    Traceback (most recent call last):
    ...
    phys.options.OptionError: epochs must be an int, got 2.7
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["OptionError", "Options", "check_value", "option", "option_fields"]

_MISSING: Any = dataclasses.MISSING


class OptionError(ValueError):
    """A bad value of one option; :attr:`option` is its name (for callers that point at
    where it was written: a flag, a sweep file's key and line)."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.option)


def option(default: Any = _MISSING, *, help: str, choices: Sequence[Any] | None = None,  # noqa: A002
           min: float | None = None, max: float | None = None,  # noqa: A002
           default_factory: Any = _MISSING, finite: bool = True) -> Any:
    """A dataclass field that carries its help text and allowed values.

    Args:
        default: The option's default (the one place it is written).
        help: One line for ``--help`` and the docs.
        choices: Allowed values, when there is a fixed set.
        min, max: Inclusive bounds of a number.
        default_factory: For mutable defaults (``dict``).
        finite: Refuse NaN and infinities (numbers only).
    """
    metadata = {"help": help, "choices": None if choices is None else tuple(choices),
                "min": min, "max": max, "finite": finite}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_fields(cls: Any) -> list[tuple[dataclasses.Field, Any]]:
    """``[(field, resolved type), ...]`` of an options dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def _union_args(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has type ``hint`` (ints are not bools; floats take ints)."""
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    origin = typing.get_origin(hint) or hint
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping)
    if origin in (tuple, list, Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return (isinstance(value, (tuple, list))
                and all(_fits(v, args[0]) for v in value) if args else True)
    return isinstance(value, origin) if isinstance(origin, type) else True


def _describe(hint: Any) -> str:
    names = []
    for arg in _union_args(hint):
        if arg is type(None):
            names.append("None")
        else:
            origin = typing.get_origin(arg) or arg
            names.append({int: "an int", float: "a number", bool: "true or false",
                          str: "a string", dict: "a table", Mapping: "a table",
                          tuple: "a list", list: "a list", Sequence: "a list"}
                         .get(origin, getattr(origin, "__name__", str(origin))))
    return " or ".join(names)


def check_value(name: str, value: Any, hint: Any, meta: Mapping[str, Any]) -> None:
    """:class:`OptionError` naming option ``name`` unless ``value`` fits its type and
    bounds."""
    try:
        _check(name, value, hint, meta)
    except ValueError as err:
        raise OptionError(str(err), name) from None


def _check(name: str, value: Any, hint: Any, meta: Mapping[str, Any]) -> None:
    args = _union_args(hint)
    if not any(_fits(value, a) for a in args):
        raise ValueError(f"{name} must be {_describe(hint)}, got {value!r}")
    choices = meta.get("choices")
    if choices is not None and isinstance(value, (tuple, list)):
        bad = [v for v in value if v not in choices]
        if bad:
            raise ValueError(f"{name} must be among {', '.join(map(str, choices))}, "
                             f"got {value!r}")
        return
    if choices is not None and value is not None and value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if meta.get("finite", True) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value!r}")


class Options:
    """Base of options dataclasses: every field is checked once, in ``__post_init__``.

    Subclasses that need cross-field checks override :meth:`check` (and call
    ``super().check()``).
    """

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Check every field against its type annotation and its :func:`option` data."""
        for f, hint in option_fields(type(self)):
            check_value(f.name, getattr(self, f.name), hint, f.metadata)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]
