"""Reading a sweep file: its tables, checked against the option dataclasses of the
command it sweeps, with the key and line of every mistake."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phys.experiment import RunOptions, borrowed
from phys.options import Options, check_value, option, option_fields
from phys.sweep.commands import COMMANDS, SweepCommand

__all__ = ["Point", "Sweep", "SweepSettings", "load_sweep", "parse_sweep"]

#: Other names of options, in [options] and [grid].
ALIASES = {"dataset": "data", "flops": "count_flops", "device_option": "device_options",
           "data_option": "data_options", "twin_option": "twin_options"}
TABLES = ("sweep", "options", "grid")
#: Points a grid may have unless confirmed (``yes=True``) or allowed by ``max_points``.
MAX_POINTS = 1000


@dataclass
class SweepSettings(Options):
    """The ``[sweep]`` table."""

    command: str = option("train", choices=tuple(COMMANDS), help="what every point runs")
    out: str | None = option(None, help="sweep directory (default: runs/<file name>)")
    cpus_per_point: float = option(1.0, max=1024, help="Ray CPUs each point asks for (> 0)")
    threads: int | None = option(None, min=1, max=1024, help="torch threads of each point "
                                 "(default: cpus_per_point rounded down, at least 1)")
    max_points: int | None = option(None, min=1, help="points the grid may have without "
                                    f"confirmation (default: {MAX_POINTS})")
    checkpoint_every: int = borrowed(RunOptions, "checkpoint_every")
    device_wait: float = borrowed(RunOptions, "device_wait")

    def check(self) -> None:
        super().check()
        if self.cpus_per_point <= 0:
            raise ValueError(f"cpus_per_point must be > 0, got {self.cpus_per_point!r}")


@dataclass
class Point:
    """One run of a sweep: its grid ``values``, the full ``config`` of the run and the
    name of its directory (readable values and a hash of the config)."""

    values: dict[str, Any]
    config: dict[str, Any]
    key: str

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values.items()) or "(single point)"


@dataclass
class Sweep:
    """A parsed sweep file (see :mod:`phys.sweep`)."""

    command: str
    out: Path
    options: dict[str, Any]
    grid: dict[str, list[Any]]
    points: list[Point]
    cpus_per_point: float
    threads: int
    checkpoint_every: int
    device_wait: float
    source: str

    @property
    def strategy(self) -> SweepCommand:
        """What each point runs (see :mod:`phys.sweep.commands`)."""
        return COMMANDS[self.command]


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def _line_of(text: str, table: str, key: str | None = None) -> int | None:
    """Line (1-based) where ``key`` is set in ``[table]`` (``""``: the top; also a dotted
    ``key.sub = ...`` or a ``[table.key]`` header), or where the table starts when ``key``
    is ``None``."""
    current = ""
    pattern = None if key is None else re.compile(
        rf"^\s*(?:\"{re.escape(key)}\"|'{re.escape(key)}'|{re.escape(key)})\s*[=.]")
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            current = re.sub(r"\s*\.\s*", ".", header.group(1)).replace('"', "")
            if current == table if key is None else f"{current}.".startswith(
                    f"{table}.{key}."):
                return number
            continue
        if pattern is not None and current == table and pattern.match(line):
            return number
    if key is not None and "." in table:  # an inline table: options.device_options = {...}
        parent, _, child = table.rpartition(".")
        return _line_of(text, parent, child)
    return None


@dataclass
class _Where:
    """Where a sweep file's text came from, to name the key and line of a mistake."""

    text: str
    source: str
    keys: dict[str, str] = field(default_factory=dict)  # grid name -> key as written
    option_keys: dict[str, str] = field(default_factory=dict)  # [options] name -> key

    def at(self, table: str, key: str | None) -> str:
        line = _line_of(self.text, table, key) if key else _line_of(self.text, table)
        return f" (line {line})" if line is not None else ""

    def error(self, table: str, key: str, problem: str) -> ValueError:
        name = f"[{table}] {key}" if table else key
        return ValueError(f"{self.source}: {name}{self.at(table, key)}: {problem}")


def _table(where: _Where, doc: Mapping[str, Any], table: str) -> dict[str, Any]:
    value = doc.get(table, {})
    if not isinstance(value, dict):
        raise where.error("", table, f"must be a table ([{table}]), got {value!r}")
    return value


def _settings(where: _Where, table: Mapping[str, Any]) -> SweepSettings:
    schema = {f.name: (hint, f.metadata) for f, hint in option_fields(SweepSettings)}
    for key, value in table.items():
        if key not in schema:
            raise where.error("sweep", key, f"unknown key; [sweep] takes {', '.join(schema)}")
        try:
            check_value(key, value, *schema[key])
        except ValueError as err:
            raise where.error("sweep", key, str(err)) from None
    try:
        return SweepSettings(**table)
    except ValueError as err:
        key = next((k for k in table if str(err).startswith(f"{k} ")), "command")
        raise where.error("sweep", key, str(err)) from None


def _options(where: _Where, table: Mapping[str, Any], strategy: SweepCommand) -> dict:
    schema, options = strategy.schema(), {}
    for key, value in table.items():
        name = ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
        if name not in schema:
            raise where.error("options", key, f"unknown option for phys {strategy.name}; "
                                              f"known: {', '.join(sorted(schema))}")
        try:
            check_value(name, value, *schema[name])
        except ValueError as err:
            raise where.error("options", key, str(err)) from None
        options[name], where.option_keys[name] = value, key
    return options


def _grid(where: _Where, table: Mapping[str, Any], strategy: SweepCommand,
          options: Mapping[str, Any]) -> dict[str, list[Any]]:
    schema, grid = {**strategy.schema(), **strategy.grid_schema()}, {}
    for key, values in table.items():
        name = ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
        name = strategy.grid_aliases.get(name, name)
        if name not in schema:
            raise where.error("grid", key, f"unknown option for phys {strategy.name}; "
                                           f"known: {', '.join(sorted(schema))}")
        if not isinstance(values, list) or not values:
            raise where.error("grid", key, f"must be a non-empty list of values, got {values!r}")
        for value in values:
            try:
                check_value(name, value, *schema[name])
            except ValueError as err:
                raise where.error("grid", key, f"every value: {err}") from None
        if name in options or strategy.sets.get(name) in options:
            raise where.error("grid", key, "is also set in [options]; give it in one place")
        if name in grid:
            raise where.error("grid", key, "is given twice")
        grid[name], where.keys[name] = values, key
    return grid


def _check_size(where: _Where, grid: Mapping[str, list[Any]], settings: SweepSettings,
                yes: bool) -> None:
    """Refuse a grid of more points than allowed, counted without making them."""
    count = math.prod(len(values) for values in grid.values())
    limit = MAX_POINTS if settings.max_points is None else settings.max_points
    if count > limit and not yes:
        raise ValueError(
            f"{where.source}: [grid]{where.at('grid', None)}: {count:,} points, more than "
            f"{limit:,} ({'max_points' if settings.max_points else 'the default limit'}); "
            f"confirm with yes=True or set max_points = {count} in [sweep]")


def _culprit(where: _Where, strategy: SweepCommand, grid: Mapping[str, list[Any]],
             err: Exception) -> tuple[str, str] | None:
    """``(table, key as written)`` of the sweep's option that ``err`` is about."""
    name = getattr(err, "option", None)
    if name is None:  # a check across options: the first grid option it names
        name = next((k for k in grid if k in str(err)), None)
    name = {v: k for k, v in strategy.sets.items()}.get(name, name) if name not in grid \
        else name
    if name in grid:
        return "grid", where.keys[name]
    if name in where.option_keys:
        return "options", where.option_keys[name]
    return None


def _points(where: _Where, strategy: SweepCommand, options: Mapping[str, Any],
            grid: Mapping[str, list[Any]]) -> list[Point]:
    """Every point's configuration, checked as the command checks it (points that agree
    on what :meth:`~phys.sweep.commands.SweepCommand.check` reads are checked once)."""
    points, checked = [], set()
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo, strict=True))
        try:
            config = strategy.config(options, values)
            part = json.dumps({k: config.get(k) for k in strategy.check_fields},
                              sort_keys=True, default=repr)
            if part not in checked:
                strategy.check(config)
                checked.add(part)
        except (ValueError, TypeError) as err:
            raise _point_error(where, strategy, grid, values, err) from None
        points.append(Point(values, config, _point_key(values, config)))
    return points


def _point_error(where: _Where, strategy: SweepCommand, grid: Mapping[str, list[Any]],
                 values: Mapping[str, Any], err: Exception) -> ValueError:
    label = " ".join(f"{k}={v!r}" if isinstance(v, dict) else f"{k}={v}"
                     for k, v in values.items()) or "(single)"
    culprit = _culprit(where, strategy, grid, err)
    if culprit is None:
        return ValueError(f"{where.source}: point {label}{where.at('options', None)}: {err}")
    table, key = culprit
    point = f"point {label}: " if table == "grid" else ""
    return where.error(table, key, f"{point}{err}")


def _point_key(values: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    readable = "_".join(f"{k}-{v}" for k, v in values.items()) or "point"
    readable = re.sub(r"[^A-Za-z0-9.=-]+", "_", readable).strip("_")[:80]
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def parse_sweep(text: str, *, source: str = "SWEEP.toml", out: str | Path | None = None,
                name: str = "sweep", yes: bool = False) -> Sweep:
    """Parse and check a sweep file's text; every point's configuration is built and
    checked here as the command checks its options (device and dataset options
    included), before anything runs.

    Args:
        yes: Allow a grid of more points than ``max_points`` in ``[sweep]`` (default
            :data:`MAX_POINTS`); the points are counted before any is made.

    Raises:
        ValueError: bad TOML (with its line), an unknown key, a value of the wrong type,
            a point whose options the run refuses, or too many points - naming the key
            and its line.

    Examples::

        >>> sweep = parse_sweep('[options]\\nepochs = 2\\n[grid]\\nseed = [0, 1]\\n')
        >>> [p.label for p in sweep.points]
        ['seed=0', 'seed=1']
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source}: not valid TOML: {err}") from None
    where = _Where(text, source)
    for key in doc:
        if key not in TABLES:
            line = _line_of(text, key) or _line_of(text, "", key)
            at = f" (line {line})" if line is not None else ""
            raise ValueError(f"{source}: unknown key {key!r}{at}; a sweep file has the "
                             f"tables [sweep], [options] and [grid]")
    settings = _settings(where, _table(where, doc, "sweep"))
    strategy = COMMANDS[settings.command]
    options = _options(where, _table(where, doc, "options"), strategy)
    grid = _grid(where, _table(where, doc, "grid"), strategy, options)
    _check_size(where, grid, settings, yes)
    threads = settings.threads or max(1, math.floor(settings.cpus_per_point))
    return Sweep(command=settings.command, out=Path(out or settings.out or f"runs/{name}"),
                 options=options, grid=grid, points=_points(where, strategy, options, grid),
                 cpus_per_point=settings.cpus_per_point, threads=threads,
                 checkpoint_every=settings.checkpoint_every,
                 device_wait=settings.device_wait, source=source)


def load_sweep(path: str | Path, *, out: str | Path | None = None,
               yes: bool = False) -> Sweep:
    """Read and check sweep file ``path`` (see :func:`parse_sweep`)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read the sweep file {path}: {err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ValueError(f"{path} (line {line}): not UTF-8 text (byte {raw[err.start]:#04x}); "
                         f"a sweep file is TOML, which is UTF-8") from None
    return parse_sweep(text, source=str(path), out=out, name=path.stem, yes=yes)
