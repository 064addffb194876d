"""Rig files for ``visa:`` devices: SCPI instruments declared as data, checked whole.

A rig file (TOML) says which instruments make the rig (VISA resource, terminations,
timeout, the ``*IDN?`` they must answer), how each input is set (one SCPI command per
value, or one vector upload as a comma list or an IEEE 488.2 binary block), what
triggers a measurement, and how the outputs are read and parsed. Every key is checked
against :data:`SCHEMA` before anything is sent; an error names the file and line.
``examples/scpi_rig.toml`` documents every key.

Examples::

    >>> rig = parse_rig('''
    ... in_range = [-1.0, 1.0]
    ... [instruments.gen]
    ... idn = "PHYS,SCPI-GEN"
    ... [inputs]
    ... instrument = "gen"
    ... n = 2
    ... set = "SOUR{i}:VOLT {value:.6f}"
    ... [[outputs]]
    ... instrument = "gen"
    ... query = "MEAS?"
    ... n = 3
    ... ''', "rig.toml")
    >>> rig.inputs.command(0, 0.25)
    'SOUR1:VOLT 0.250000'
    >>> rig.n_out
    3
    >>> parse_rig('in_range = [0, 1]\\nsettel = 0.1\\n', "rig.toml")
    Traceback (most recent call last):
    ...
    phys.devices.visa_rig.RigError: rig.toml:2: unknown key 'settel'; known keys: ...
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["SCHEMA", "Inputs", "Instrument", "Output", "Rig", "RigError", "Trigger",
           "load_rig", "parse_rig"]

_REQUIRED: Any = object()

#: Binary value types a block may carry (struct codes): float32, float64, int16, int32.
DATATYPES = ("f", "d", "h", "i")


class RigError(ValueError):
    """A rig file that does not check: the message starts with ``FILE:LINE:``."""


@dataclass(frozen=True)
class Key:
    """One key of a rig table: its type, default (absent: required) and allowed values."""

    kind: type | tuple[type, ...]
    default: Any = _REQUIRED
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    positive: bool = False


_NUMBER = (int, float)
_INSTRUMENT = {
    "resource": Key(str, None), "read_termination": Key(str, "\n"),
    "write_termination": Key(str, "\n"), "timeout": Key(_NUMBER, 2.0, positive=True),
    "idn": Key(str), "errors": Key(str, "SYST:ERR?"), "baud_rate": Key(int, None, min=1),
    "setup": Key(list, []),
}
_INPUTS = {
    "instrument": Key(str), "n": Key(int, min=1), "set": Key(str),
    "mode": Key(str, "each", ("each", "vector")),
    "encoding": Key(str, "ascii", ("ascii", "binary")),
    "datatype": Key(str, "f", DATATYPES), "big_endian": Key(bool, False),
}
_TRIGGER = {"instrument": Key(str), "command": Key(str), "wait": Key(str, "")}
_OUTPUT = {
    "instrument": Key(str), "query": Key(str), "n": Key(int, min=1),
    "format": Key(str, "ascii", ("ascii", "binary")), "datatype": Key(str, "f", DATATYPES),
    "big_endian": Key(bool, False), "separator": Key(str, ","),
}
_TOP = {
    "name": Key(str, "visa rig"), "in_range": Key(list), "settle": Key(_NUMBER, 0.0, min=0),
    "max_batch": Key(int, 64, min=1), "batch": Key(str, "row", ("row", "instrument")),
    "stochastic": Key(bool, True), "instruments": Key(dict), "inputs": Key(dict),
    "trigger": Key(dict, None), "outputs": Key(list),
}

#: Every table of a rig file and its keys (``instruments.NAME`` and each ``[[outputs]]``).
SCHEMA: Mapping[str, Mapping[str, Key]] = {
    "": _TOP, "instruments.*": _INSTRUMENT, "inputs": _INPUTS, "trigger": _TRIGGER,
    "outputs[]": _OUTPUT,
}


# -- where a key was written -----------------------------------------------------------
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """The line (from 1) where each table and key of a TOML text is written:
    ``("instruments", "gen", "idn") -> 7``; the n-th ``[[outputs]]`` is ``("outputs", n)``."""
    lines: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    counts: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            path = _dotted(header.group(2))
            if header.group(1) == "[[":
                counts[path] = counts.get(path, -1) + 1
                table = (*path, counts[path])
            else:
                table = path
            lines.setdefault(table, number)
            continue
        assign = _ASSIGN.match(line)
        if assign:
            lines.setdefault((*table, *_dotted(assign.group(1))), number)
    return lines


class _Where:
    """Turns a key path into ``FILE:LINE: path:`` for error messages."""

    def __init__(self, source: str, text: str) -> None:
        self.source, self.lines = source, key_lines(text)

    def line(self, path: tuple[Any, ...]) -> int:
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1

    def error(self, path: tuple[Any, ...], message: str,
              at: tuple[Any, ...] | None = None) -> RigError:
        """``FILE:LINE: path: message`` (the line of ``at``, default ``path``)."""
        name = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path)
        name = name.replace(".[", "[")
        prefix = f"{name}: " if name else ""
        line = self.line(path if at is None else at)
        return RigError(f"{self.source}:{line}: {prefix}{message}")


def _check_value(key: Key, value: Any) -> str | None:
    """Why ``value`` does not fit ``key``, or ``None``."""
    kinds = key.kind if isinstance(key.kind, tuple) else (key.kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds).replace("dict", "table")
        return f"must be {names.replace('list', 'array')}, got {value!r}"
    if key.choices is not None and value not in key.choices:
        return f"must be one of {', '.join(map(repr, key.choices))}, got {value!r}"
    if isinstance(value, _NUMBER) and not isinstance(value, bool):
        if not math.isfinite(value):
            return f"must be finite, got {value!r}"
        if key.min is not None and value < key.min:
            return f"must be >= {key.min}, got {value!r}"
        if key.positive and value <= 0:
            return f"must be > 0, got {value!r}"
    return None


def _table(data: Any, schema: Mapping[str, Key], path: tuple[Any, ...],
           where: _Where) -> dict[str, Any]:
    """``data`` checked against ``schema``, with the defaults filled in."""
    if not isinstance(data, dict):
        raise where.error(path, f"must be a table, got {data!r}")
    unknown = [k for k in data if k not in schema]
    if unknown:
        raise where.error(path, f"unknown key {unknown[0]!r}; known keys: "
                          f"{', '.join(schema)}", at=(*path, unknown[0]))
    out = {}
    for name, key in schema.items():
        if name not in data:
            if key.default is _REQUIRED:
                raise where.error(path, f"missing key {name!r}")
            out[name] = key.default
            continue
        problem = _check_value(key, data[name])
        if problem:
            raise where.error((*path, name), problem)
        out[name] = data[name]
    return out


# -- templates -------------------------------------------------------------------------
_SAMPLE = {"i": 1, "index": 0, "value": 0.5, "values": "0.5", "rows": 1}


def _template(text: str, allowed: tuple[str, ...], required: tuple[str, ...],
              path: tuple[Any, ...], where: _Where) -> str:
    """``text`` checked as a ``str.format`` template of the ``allowed`` placeholders."""
    try:
        names = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
    except ValueError as err:
        raise where.error(path, f"template {text!r} does not parse: {err}") from None
    for name in names:
        if name not in allowed:
            raise where.error(path, f"template {text!r} has placeholder {{{name}}}; it may "
                              f"use {', '.join('{' + a + '}' for a in allowed)}")
    for name in required:
        if name not in names:
            raise where.error(path, f"template {text!r} is missing the placeholder "
                              f"{{{name}}}")
    try:
        text.format(**_SAMPLE)
    except (ValueError, TypeError, IndexError, KeyError) as err:
        raise where.error(path, f"template {text!r} cannot be formatted: {err}") from None
    return text


# -- the checked rig -------------------------------------------------------------------
@dataclass(frozen=True)
class Instrument:
    """One instrument of a rig (times in seconds; ``resource=None``: given by the address)."""

    name: str
    resource: str | None
    read_termination: str
    write_termination: str
    timeout: float
    idn: str
    errors: str
    baud_rate: int | None
    setup: tuple[str, ...]

    def idn_matches(self, reply: str) -> bool:
        """Whether an ``*IDN?`` reply matches the rig's pattern (a regex, from the start)."""
        return re.match(self.idn, reply.strip()) is not None


@dataclass(frozen=True)
class Inputs:
    """How the inputs are set: per value (``mode="each"``) or as one vector upload."""

    instrument: str
    n: int
    set: str
    mode: str
    encoding: str
    datatype: str
    big_endian: bool

    def command(self, index: int, value: float) -> str:
        """The command that sets input ``index`` (from 0) to ``value``."""
        return self.set.format(i=index + 1, index=index, value=value)

    def prefix(self, rows: int) -> str:
        """The text before a binary block (``mode="vector"``, ``encoding="binary"``)."""
        return self.set.split("{values}")[0].format(rows=rows)

    def vector(self, values: list[float], rows: int) -> str:
        """The ASCII vector upload of ``values`` (``rows`` rows)."""
        return self.set.format(values=",".join(f"{v:.9g}" for v in values), rows=rows)


@dataclass(frozen=True)
class Trigger:
    """What starts a measurement: ``command`` written, then ``wait`` queried (when set)
    until it answers 1 (e.g. ``*OPC?``)."""

    instrument: str
    command: str
    wait: str


@dataclass(frozen=True)
class Output:
    """``n`` values per row read by ``query`` (ASCII list or IEEE 488.2 binary block)."""

    instrument: str
    query: str
    n: int
    format: str
    datatype: str
    big_endian: bool
    separator: str


@dataclass(frozen=True)
class Rig:
    """A checked rig file; see the module docstring."""

    source: str
    name: str
    in_range: tuple[float, float]
    settle: float
    max_batch: int
    batch: str
    stochastic: bool
    instruments: Mapping[str, Instrument]
    inputs: Inputs
    trigger: Trigger | None
    outputs: tuple[Output, ...]

    @property
    def n_out(self) -> int:
        """Values measured per input row."""
        return sum(o.n for o in self.outputs)

    def resources(self, address: str, given: Mapping[str, str] | None = None
                  ) -> dict[str, str]:
        """Each instrument's VISA resource: ``given[name]``, else the rig's ``resource``,
        else ``address`` (for the one instrument that names none).

        Raises:
            RigError: an instrument without a resource, or ``given`` naming an unknown one.
        """
        given = dict(given or {})
        for name, value in given.items():
            if not isinstance(value, str) or not value:
                raise RigError(f"resources[{name!r}] must be a VISA resource string such as "
                               f"'ASRL/dev/ttyUSB0::INSTR', got {value!r}")
        unknown = sorted(set(given) - set(self.instruments))
        if unknown:
            raise RigError(f"resources names instrument {unknown[0]!r}, which {self.source} "
                           f"does not have; it has {', '.join(self.instruments)}")
        out = {}
        for name, inst in self.instruments.items():
            out[name] = given.get(name) or inst.resource or address
            if not out[name]:
                raise RigError(f"{self.source}: instrument {name!r} has no resource: give "
                               f"it in the rig file, as visa:RESOURCE, or in resources")
        return out


def _instruments(data: dict[str, Any], where: _Where) -> dict[str, Instrument]:
    if not data:
        raise where.error(("instruments",), "must name at least one instrument")
    out, missing = {}, []
    for name, table in data.items():
        t = _table(table, _INSTRUMENT, ("instruments", name), where)
        setup = t["setup"]
        if not all(isinstance(c, str) for c in setup):
            raise where.error(("instruments", name, "setup"),
                              f"must be an array of strings, got {setup!r}")
        try:
            re.compile(t["idn"])
        except re.error as err:
            raise where.error(("instruments", name, "idn"),
                              f"is not a regular expression: {err}") from None
        if t["resource"] is None:
            missing.append(name)
        out[name] = Instrument(name=name, **{**t, "timeout": float(t["timeout"]),
                                             "setup": tuple(setup)})
    if len(missing) > 1:
        raise where.error(("instruments", missing[1]), f"instruments {missing[0]!r} and "
                          f"{missing[1]!r} both lack a resource; at most one can take "
                          f"the address's")
    return out


def _inputs(data: Any, batch: str, where: _Where) -> Inputs:
    t = _table(data, _INPUTS, ("inputs",), where)
    path = ("inputs", "set")
    if t["mode"] == "each":
        _template(t["set"], ("i", "index", "value"), ("value",), path, where)
        if batch == "instrument":
            raise where.error(("batch",), "'instrument' needs inputs.mode = 'vector' (a "
                              "batch is uploaded as one vector)")
    else:
        _template(t["set"], ("values", "rows"), ("values",), path, where)
        if t["encoding"] == "binary" and not t["set"].endswith("{values}"):
            raise where.error(path, f"a binary block ends the command: {t['set']!r} must "
                              f"end with {{values}}")
    return Inputs(**t)


def _outputs(data: list[Any], where: _Where) -> tuple[Output, ...]:
    if not data:
        raise where.error(("outputs",), "must list at least one [[outputs]] table")
    outs = []
    for k, item in enumerate(data):
        t = _table(item, _OUTPUT, ("outputs", k), where)
        _template(t["query"], ("rows",), (), ("outputs", k, "query"), where)
        outs.append(Output(**t))
    return tuple(outs)


def _range(value: list[Any], where: _Where) -> tuple[float, float]:
    ok = (len(value) == 2 and all(isinstance(v, _NUMBER) and not isinstance(v, bool)
                                  and math.isfinite(v) for v in value))
    if not ok or value[0] >= value[1]:
        raise where.error(("in_range",), f"must be [min, max] with finite min < max, got "
                          f"{value!r}")
    return float(value[0]), float(value[1])


def _refs(rig: Rig, where: _Where) -> None:
    users = [(("inputs", "instrument"), rig.inputs.instrument)]
    if rig.trigger is not None:
        users.append((("trigger", "instrument"), rig.trigger.instrument))
    users += [(("outputs", k, "instrument"), o.instrument) for k, o in enumerate(rig.outputs)]
    for path, name in users:
        if name not in rig.instruments:
            raise where.error(path, f"names instrument {name!r}; the rig has "
                              f"{', '.join(rig.instruments)}")


def parse_rig(text: str, source: str = "<rig>") -> Rig:
    """Check a rig file's text (``source`` names it in errors) and return the :class:`Rig`.

    Raises:
        RigError: ``SOURCE:LINE: key: problem`` - TOML that does not parse, an unknown
            or missing key, a wrong type or value, a template with a missing or unknown
            placeholder, an instrument that is not declared.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RigError(f"{source}: not valid TOML: {err}") from None
    where = _Where(source, text)
    top = _table(data, _TOP, (), where)
    trigger = None
    if top["trigger"] is not None:
        t = _table(top["trigger"], _TRIGGER, ("trigger",), where)
        _template(t["command"], ("rows",), (), ("trigger", "command"), where)
        trigger = Trigger(**t)
    rig = Rig(source=source, name=top["name"], in_range=_range(top["in_range"], where),
              settle=float(top["settle"]), max_batch=top["max_batch"], batch=top["batch"],
              stochastic=top["stochastic"],
              instruments=_instruments(top["instruments"], where),
              inputs=_inputs(top["inputs"], top["batch"], where), trigger=trigger,
              outputs=_outputs(top["outputs"], where))
    _refs(rig, where)
    return rig


def load_rig(path: str | Path) -> Rig:
    """Read and check the rig file at ``path`` (see :func:`parse_rig`).

    Raises:
        FileNotFoundError: no such file.
        RigError: the file does not check (naming its line).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"rig file {str(path)!r} does not exist")
    return parse_rig(p.read_text(encoding="utf-8"), str(path))
