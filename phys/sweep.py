"""Sweeps: a grid of ``phys train`` or ``phys swap`` runs, each point a Ray task.

A sweep file is TOML::

    [sweep]
    command = "train"        # or "swap"
    out = "runs/widths"      # default: runs/<file name>
    cpus_per_point = 1       # Ray CPUs each point asks for (and its torch threads)

    [options]                # the same for every point: phys train options by name
    data = "digits"
    epochs = 5
    device_options = { noise = 0.01 }

    [grid]                   # every combination of these values is one point
    trainer = ["phyll", "pat"]
    hidden = [64, 256]
    seed = [0, 1, 2]

Option names are those of :class:`~phys.experiment.TrainSpec` (``phys train``) or
:class:`~phys.quantum.study.SwapConfig` (``phys swap``), written with ``_`` or ``-``
(``dataset`` also means ``data``; ``seeds`` in a grid means ``seed``). A swap grid takes
``level`` and ``seed``: each point trains one level with one seed.

Each point runs the code of ``phys train`` / ``phys swap`` in its own run directory
``OUT/points/NAME`` (with checkpoints, see :mod:`phys.runs`), as a Ray task: on a local
Ray by default, on a cluster with ``address``. A device that is one piece of hardware (a
serial port or socket address) is opened once, in one Ray actor, and every point's
queries go through that actor one at a time. The results are gathered into
``OUT/sweep.csv``, ``OUT/sweep.md`` and ``OUT/sweep.png``; ``OUT/sweep.json`` remembers
finished points, so running the sweep again skips them (and resumes unfinished ones from
their checkpoints).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import statistics
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phys import atomic

__all__ = ["DeviceHolder", "Point", "Sweep", "SweepOutcome", "load_sweep",
           "parse_sweep", "run_point", "run_sweep"]

COMMANDS = ("train", "swap")
CSV, MARKDOWN, PLOT, STATE = "sweep.csv", "sweep.md", "sweep.png", "sweep.json"
SWEEP_KEYS = {"command": "str", "out": "str", "cpus_per_point": "float", "threads": "int",
              "checkpoint_every": "int", "device_wait": "float"}
ALIASES = {"dataset": "data", "flops": "count_flops", "device_option": "device_options",
           "data_option": "data_options", "twin_option": "twin_options"}
GRID_ALIASES = {"train": {"seeds": "seed"}, "swap": {"seeds": "seed", "levels": "level"}}
#: Columns of the results table besides the grid's.
RESULT_COLUMNS = ("test_accuracy", "train_accuracy", "epochs", "seconds", "device_queries",
                  "device_samples", "runs", "status")


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
    """A parsed sweep file (see the module docstring)."""

    command: str
    out: Path
    options: dict[str, Any]
    grid: dict[str, list[Any]]
    points: list[Point]
    cpus_per_point: float = 1.0
    threads: int = 1
    checkpoint_every: int = 200
    device_wait: float = 300.0
    source: str = "SWEEP.toml"


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did: one row per point and the table written."""

    rows: list[dict[str, Any]]
    table: str
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)
    #: Per hardware device: calls its actor served and the device's counters.
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)


# -- reading a sweep file -----------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def _line_of(text: str, table: str, key: str | None = None) -> int | None:
    """Line (1-based) where ``key`` is set in ``[table]`` (``""``: the top), or where the
    table starts when ``key`` is ``None``."""
    current = ""
    pattern = None if key is None else re.compile(
        rf"^\s*(?:\"{re.escape(key)}\"|'{re.escape(key)}'|{re.escape(key)})\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            current = re.sub(r"\s*\.\s*", ".", header.group(1)).replace('"', "")
            if key is None and current == table:
                return number
            continue
        if pattern is not None and current == table and pattern.match(line):
            return number
    if key is not None and "." in table:  # an inline table: options.device_options = {...}
        parent, _, child = table.rpartition(".")
        return _line_of(text, parent, child)
    return None


class _Where:
    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source

    def error(self, table: str, key: str, problem: str) -> ValueError:
        line = _line_of(text=self.text, table=table, key=key)
        name = f"[{table}] {key}" if table else key
        at = f" (line {line})" if line is not None else ""
        return ValueError(f"{self.source}: {name}{at}: {problem}")


def _fields(command: str) -> dict[str, Any]:
    """Option name -> type hint of what a point of ``command`` runs."""
    if command == "train":
        import phys.experiment as module

        cls: type = module.TrainSpec
    else:
        import phys.quantum.study as module

        cls = module.SwapConfig
    return typing.get_type_hints(cls, vars(module))


_UNIONS = (typing.Union, types.UnionType)
_LISTS = (list, tuple, Sequence)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in _UNIONS:
        return " or ".join(_describe(a) for a in typing.get_args(hint) if a is not type(None))
    if origin in _LISTS:
        args = typing.get_args(hint)
        return f"a list of {_describe(args[0]) if args else 'values'}"
    if origin is dict or hint is dict:
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, str(hint))


def _fits(value: Any, hint: Any) -> bool:
    """Whether a TOML value fits a dataclass field's type hint."""
    origin = typing.get_origin(hint)
    if origin in _UNIONS:
        return any(_fits(value, a) for a in typing.get_args(hint) if a is not type(None))
    if origin in _LISTS:
        args = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value) if args \
            else isinstance(value, list)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _canonical(key: str) -> str:
    key = key.replace("-", "_")
    return ALIASES.get(key, key)


def _check_table(where: _Where, table: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error("", table, f"must be a table ([{table}]), got {value!r}")
    return value


def parse_sweep(text: str, *, source: str = "SWEEP.toml", out: str | Path | None = None,
                name: str = "sweep") -> Sweep:
    """Parse and check a sweep file's text; every point's configuration is built (and so
    checked) here, before anything runs.

    Raises:
        ValueError: bad TOML (with its line), an unknown key, a value of the wrong type,
            or a point whose options the run refuses - naming the key and its line.

    Examples::

        >>> sweep = parse_sweep('[options]\\nepochs = 2\\n[grid]\\nseed = [0, 1]\\n')
        >>> [p.label for p in sweep.points]
        ['seed=0', 'seed=1']
    """
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source}: not valid TOML: {err}") from None
    where = _Where(text, source)
    for key in doc:
        if key not in ("sweep", "options", "grid"):
            line = _line_of(text, key) or _line_of(text, "", key)
            at = f" (line {line})" if line is not None else ""
            raise ValueError(f"{source}: unknown key {key!r}{at}; a sweep file has the "
                             f"tables [sweep], [options] and [grid]")
    settings = _check_table(where, "sweep", doc.get("sweep", {}))
    for key, value in settings.items():
        if key not in SWEEP_KEYS:
            raise where.error("sweep", key, f"unknown key; [sweep] takes "
                                            f"{', '.join(SWEEP_KEYS)}")
        hint = {"str": str, "int": int, "float": float}[SWEEP_KEYS[key]]
        if not _fits(value, hint):
            raise where.error("sweep", key, f"must be {_describe(hint)}, got {value!r}")
    command = settings.get("command", "train")
    if command not in COMMANDS:
        raise where.error("sweep", "command", f"must be one of {', '.join(COMMANDS)}, "
                                              f"got {command!r}")
    for key, low in (("cpus_per_point", 0.0), ("threads", 1), ("checkpoint_every", 0),
                     ("device_wait", 0.0)):
        if key in settings and (settings[key] < low or (key == "cpus_per_point"
                                                        and settings[key] == 0)):
            bound = "> 0" if key == "cpus_per_point" else f">= {low}"
            raise where.error("sweep", key, f"must be {bound}, got {settings[key]!r}")
    hints = _fields(command)

    options: dict[str, Any] = {}
    for key, value in _check_table(where, "options", doc.get("options", {})).items():
        name_ = _canonical(key)
        if name_ not in hints:
            raise where.error("options", key, f"unknown option for phys {command}; known: "
                                              f"{', '.join(sorted(hints))}")
        if not _fits(value, hints[name_]):
            raise where.error("options", key, f"must be {_describe(hints[name_])}, "
                                              f"got {value!r}")
        options[name_] = value

    grid: dict[str, list[Any]] = {}
    grid_hints = dict(hints)
    if command == "swap":
        grid_hints.update(level=int, seed=int)
    for key, values in _check_table(where, "grid", doc.get("grid", {})).items():
        name_ = GRID_ALIASES[command].get(_canonical(key), _canonical(key))
        if name_ not in grid_hints:
            raise where.error("grid", key, f"unknown option for phys {command}; known: "
                                           f"{', '.join(sorted(grid_hints))}")
        if not isinstance(values, list) or not values:
            raise where.error("grid", key, f"must be a non-empty list of values, got {values!r}")
        for value in values:
            if not _fits(value, grid_hints[name_]):
                raise where.error("grid", key, f"every value must be "
                                               f"{_describe(grid_hints[name_])}, got {value!r}")
        taken = {"level": "levels", "seed": "first_seed"} if command == "swap" else {}
        if name_ in options or taken.get(name_) in options:
            raise where.error("grid", key, "is also set in [options]; give it in one place")
        if name_ in grid:
            raise where.error("grid", key, "is given twice")
        grid[name_] = values

    points = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo, strict=True))
        config = _point_config(command, options, values)
        label = " ".join(f"{k}={v}" for k, v in values.items())
        try:
            config = _checked(command, config)
        except (ValueError, TypeError) as err:
            culprit = next((k for k in values if k in str(err)), None)
            table, key = ("grid", culprit) if culprit else ("options", None)
            line = _line_of(text, table, key) if key else _line_of(text, "options")
            at = f" (line {line})" if line is not None else ""
            raise ValueError(f"{source}: point {label or '(single)'}{at}: {err}") from None
        points.append(Point(values, config, _point_key(values, config)))
    out_dir = Path(out if out is not None else settings.get("out", f"runs/{name}"))
    return Sweep(command=command, out=out_dir, options=options, grid=grid, points=points,
                 cpus_per_point=float(settings.get("cpus_per_point", 1.0)),
                 threads=int(settings.get("threads", max(1, math.floor(
                     settings.get("cpus_per_point", 1.0))))),
                 checkpoint_every=int(settings.get("checkpoint_every", 200)),
                 device_wait=float(settings.get("device_wait", 300.0)), source=source)


def _point_config(command: str, options: Mapping[str, Any],
                  values: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(options)
    for key, value in values.items():
        if command == "swap" and key == "level":
            config["levels"] = [value]
        elif command == "swap" and key == "seed":
            config["first_seed"], config["seeds"] = value, 1
        else:
            config[key] = value
    return config


def _checked(command: str, config: dict[str, Any]) -> dict[str, Any]:
    """The run's full configuration (defaults filled in), as the run directory keeps it."""
    from phys.runs import jsonable

    if command == "train":
        from phys.experiment import TrainSpec

        return jsonable(vars(TrainSpec(**config)))
    from phys.quantum.study import SwapConfig

    return jsonable(vars(SwapConfig(**config)))


def _point_key(values: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    readable = "_".join(f"{k}-{v}" for k, v in values.items()) or "point"
    readable = re.sub(r"[^A-Za-z0-9.=-]+", "_", readable).strip("_")[:80]
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def load_sweep(path: str | Path, *, out: str | Path | None = None) -> Sweep:
    """Read and check sweep file ``path`` (see :func:`parse_sweep`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"cannot read the sweep file {path}: {err}") from None
    return parse_sweep(text, source=str(path), out=out, name=path.stem)


# -- one piece of hardware, one actor -----------------------------------------------------

def is_hardware(spec: str) -> bool:
    """Whether device ``spec`` names one physical device (a serial port or socket)
    rather than a simulator that every point can open for itself."""
    from phys import registry

    opener = registry._opener_for(spec)
    return opener is not None and opener.target == registry.OPENERS["serial"].target


class DeviceHolder:
    """Holds one device; as a Ray actor (one call at a time) it serialises the queries
    of every point that uses the device. The device opens on first use."""

    def __init__(self, spec: str, options: Mapping[str, Any]) -> None:
        self.spec, self.options, self.device = spec, dict(options), None
        self.calls = 0

    def _open(self) -> Any:
        if self.device is None:
            from phys import registry

            self.device = registry.open(self.spec, **self.options)
        return self.device

    def info(self) -> Any:
        return self._open().info

    def query(self, x: Any) -> tuple[Any, float | None, float | None]:
        """The answer to ``x`` and the lab seconds and joules it took."""
        device = self._open()
        lab, joules = device.stats.lab_seconds or 0.0, device.stats.joules or 0.0
        y = device.query(x)
        self.calls += 1
        s = device.stats
        return (y, None if s.lab_seconds is None else s.lab_seconds - lab,
                None if s.joules is None else s.joules - joules)

    def reopen(self) -> None:
        if self.device is None:
            self._open()
        else:
            self.device.reopen()

    def stats(self) -> dict[str, Any]:
        return {"calls": self.calls, **(self.device.stats.as_dict() if self.device else {})}

    def close(self) -> None:
        if self.device is not None:
            self.device.close()


def _device_class() -> type:
    from phys.device import Device

    class ActorDevice(Device):
        """A device held by a :class:`DeviceHolder` actor; queries are Ray calls."""

        def __init__(self, holder: Any, spec: str) -> None:
            import ray

            super().__init__()
            self.holder, self.spec = holder, spec
            self._cost: tuple[float | None, float | None] = (None, None)
            self.info = ray.get(holder.info.remote())

        def _call(self, method: Any, *args: Any) -> Any:
            import ray

            from phys.device import DeviceUnavailable

            try:
                return ray.get(method.remote(*args))
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None)
                if isinstance(cause, DeviceUnavailable):
                    raise DeviceUnavailable(str(cause)) from None
                raise
            except ray.exceptions.RayActorError as err:
                raise DeviceUnavailable(f"{self.spec}: the actor holding the device "
                                        f"died: {err}") from None

        def _query(self, x: Any) -> Any:
            y, lab, joules = self._call(self.holder.query, x)
            self._cost = (lab, joules)
            return y

        def _lab_cost(self, n_samples: int) -> tuple[float | None, float | None]:
            return self._cost

        def reopen(self) -> None:
            self._call(self.holder.reopen)

    return ActorDevice


# -- running one point ------------------------------------------------------------------

def run_point(command: str, config: Mapping[str, Any], out: str | Path, *,
              holders: Mapping[str, Any] | None = None, threads: int | None = None,
              checkpoint_every: int = 200, device_wait: float = 300.0,
              resume_hint: str | None = None) -> dict[str, Any]:
    """Run one point as ``phys train`` / ``phys swap`` would, in run directory ``out``
    (resumed when it holds a checkpoint of this configuration); returns its result row.

    ``holders`` maps hardware device specs to :class:`DeviceHolder` actors.
    """
    import torch

    from phys.runs import RunDir

    if threads is not None:
        torch.set_num_threads(threads)
    run = RunDir(out)
    resume = run.read_config() is not None and (run.has_checkpoint() or run.finished())
    if command == "swap":
        from phys.quantum.study import SwapConfig, run_study

        resume = resume or (run.read_config() is not None and any(
            (Path(out) / "runs").glob("*/checkpoint.pt")))
        rows, _ = run_study(SwapConfig(**config), out, resume=resume, overwrite=True,
                            checkpoint_every=checkpoint_every)
        return {"test_accuracy": statistics.fmean(r["test_accuracy"] for r in rows),
                "train_accuracy": statistics.fmean(r["train_accuracy"] for r in rows),
                "epochs": rows[0]["epochs"], "runs": len(rows),
                "seconds": sum(r["seconds_per_epoch"] * r["epochs"] for r in rows)}
    from phys.experiment import TrainSpec, open_layer_device, run

    opener = None
    if holders:
        actor_device = _device_class()

        def opener(name: str, n_in: int, n_out: int, seed: int,
                   options: Mapping[str, Any]) -> Any:
            if name in holders:
                return actor_device(holders[name], name)
            return open_layer_device(name, n_in, n_out, seed, options)

    results = run(TrainSpec(**config), out=out, resume=resume, overwrite=True,
                  checkpoint_every=checkpoint_every, device_wait=device_wait, opener=opener,
                  resume_hint=resume_hint)
    return {key: results.get(key) for key in ("test_accuracy", "train_accuracy", "epochs",
                                              "seconds", "device_queries", "device_samples")}


def _task(command: str, config: dict[str, Any], out: str, holders: dict[str, Any],
          env: dict[str, str], settings: dict[str, Any]) -> dict[str, Any]:
    """A point as a Ray task: never raises, a failure is returned as the row's status."""
    os.environ.update(env)
    t0 = time.perf_counter()
    try:
        row = run_point(command, config, out, holders=holders, **settings)
        row["status"] = "done"
    except Exception as err:  # reported in the table; the other points go on
        text = str(err).strip().splitlines()
        row = {"status": f"failed: {type(err).__name__}: {text[0] if text else ''}"}
    row["wall_seconds"] = time.perf_counter() - t0
    return row


# -- the sweep --------------------------------------------------------------------------

def _init_ray(address: str | None, num_cpus: int | None) -> Any:
    try:
        import ray
    except ImportError:
        raise RuntimeError("phys sweep runs on Ray: pip install 'physnn[distributed]'") \
            from None
    if not ray.is_initialized():
        if address is not None:
            ray.init(address=address, include_dashboard=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False)
    return ray


def _table(sweep: Sweep, rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], str]:
    columns = [*sweep.grid, *[c for c in RESULT_COLUMNS
                              if any(r.get(c) is not None for r in rows)], "dir"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            cells.append("" if v is None else f"{v:.4f}" if isinstance(v, float)
                         and c.endswith("accuracy") else f"{v:.1f}" if isinstance(v, float)
                         else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return columns, "\n".join(lines) + "\n"


def _plot(sweep: Sweep, rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Test accuracy per point; with a ``seed`` in the grid, mean and spread over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in sweep.grid if k != "seed"]
    groups: dict[str, list[float]] = {}
    for row in rows:
        if row.get("test_accuracy") is None:
            continue
        label = "\n".join(f"{k}={row[k]}" for k in keys) or "all"
        groups.setdefault(label, []).append(100 * row["test_accuracy"])
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(groups) + 2), 3.8),
                           constrained_layout=True)
    labels = list(groups)
    means = [statistics.fmean(v) for v in groups.values()]
    spread = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in groups.values()]
    ax.bar(range(len(labels)), means, yerr=spread, capsize=4, color="C0", alpha=0.8)
    for i, values in enumerate(groups.values()):
        ax.plot([i] * len(values), values, "k.", ms=4)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    low = min((min(v) for v in groups.values()), default=0.0)
    ax.set(ylabel="test accuracy (%)", ylim=(max(0.0, low - 5), 100.5),
           title=f"phys {sweep.command} sweep: {len(rows)} points"
                 + ("\n(mean ± sd over seeds)" if "seed" in sweep.grid else ""))
    ax.title.set_fontsize(10)
    ax.grid(axis="y", alpha=0.3)
    atomic.write_figure(fig, path)


def _finished(sweep: Sweep, point: Point, remembered: Mapping[str, Any]) -> dict | None:
    """A finished point's row: remembered in sweep.json, or results in its directory."""
    from phys.runs import RunDir

    if remembered.get(point.key, {}).get("status") == "done":
        return dict(remembered[point.key])
    run = RunDir(sweep.out / "points" / point.key)
    saved = run.read_config() if run.config_path.exists() else None
    if saved is None or not run.finished() or saved["config"] != point.config:
        return None
    results = json.loads(run.results.read_text())
    if sweep.command == "swap":
        rows = results["rows"]
        return {"test_accuracy": statistics.fmean(r["test_accuracy"] for r in rows),
                "train_accuracy": statistics.fmean(r["train_accuracy"] for r in rows),
                "epochs": rows[0]["epochs"], "runs": len(rows), "status": "done"}
    return {**{k: results.get(k) for k in ("test_accuracy", "train_accuracy", "epochs",
                                           "seconds", "device_queries", "device_samples")},
            "status": "done"}


def run_sweep(sweep: Sweep, *, address: str | None = None, num_cpus: int | None = None,
              log: Callable[[str], None] | None = None) -> SweepOutcome:
    """Run the sweep's unfinished points as Ray tasks and write the table and plot.

    Args:
        sweep: From :func:`load_sweep` or :func:`parse_sweep`.
        address: Ray cluster to join (``None``: start a local Ray, or use the one this
            process already started). Run directories are written on the node that runs
            each point; the rows come back to this process either way.
        num_cpus: CPUs of a local Ray (default: all).
        log: Called with a line per point started and finished.

    Returns:
        The rows, the Markdown table, and how many points ran, were skipped or failed.
    """
    from phys.report import metrics_csv

    say = log or (lambda text: None)
    out = sweep.out.resolve()
    sweep.out = out
    state_path = out / STATE
    remembered: dict[str, Any] = {}
    if state_path.exists():
        remembered = json.loads(state_path.read_text()).get("points", {})
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for point in sweep.points:
        done = _finished(sweep, point, remembered)
        if done is not None:
            rows[point.key] = {**done, "skipped": True}
        else:
            todo.append(point)
    outcome = SweepOutcome(rows=[], table="", skipped=len(sweep.points) - len(todo))
    t0 = time.perf_counter()

    def remember() -> None:
        atomic.write_json(state_path, {"command": sweep.command, "points": {
            k: {kk: vv for kk, vv in r.items() if kk != "skipped"} for k, r in rows.items()}})

    if todo:
        out.mkdir(parents=True, exist_ok=True)
        ray = _init_ray(address, num_cpus)
        holders: dict[str, Any] = {}
        hardware: dict[str, dict[str, Any]] = {}
        for point in todo:
            device = point.config.get("device")
            if sweep.command == "train" and is_hardware(device):
                options = point.config.get("device_options", {})
                if hardware.setdefault(device, options) != options:
                    raise ValueError(f"{sweep.source}: points use device {device} with "
                                     f"different device_options; one device has one set")
        holder_actor = ray.remote(num_cpus=0, max_concurrency=1)(DeviceHolder)
        for device, options in hardware.items():
            holders[device] = holder_actor.remote(device, options)
            say(f"device {device}: held by one Ray actor, its queries one at a time")
        task = ray.remote(num_cpus=sweep.cpus_per_point, max_retries=0)(_task)
        env = {k: os.environ[k] for k in ("PHYS_DATA",) if k in os.environ}
        settings = {"threads": sweep.threads, "checkpoint_every": sweep.checkpoint_every,
                    "device_wait": sweep.device_wait,
                    "resume_hint": f"phys sweep {sweep.source}"}
        pending = {}
        for point in todo:
            ref = task.remote(sweep.command, point.config, str(out / "points" / point.key),
                              holders, env, settings)
            pending[ref] = point
        say(f"{len(todo)} point(s) to run, {outcome.skipped} finished before")
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            point = pending.pop(ready[0])
            row = ray.get(ready[0])
            rows[point.key] = row
            remember()
            if row["status"] == "done":
                outcome.ran += 1
                say(f"done {point.label}: test accuracy {row['test_accuracy']:.4f} "
                    f"({row['wall_seconds']:.1f} s)")
            else:
                outcome.failed += 1
                outcome.errors[point.key] = row["status"]
                say(f"{point.label}: {row['status']}")
        for device, holder in holders.items():
            outcome.devices[device] = ray.get(holder.stats.remote())
            ray.get(holder.close.remote())
            ray.kill(holder)
    outcome.seconds = time.perf_counter() - t0
    table_rows = []
    for point in sweep.points:
        row = rows[point.key]
        table_rows.append({**point.values, **{k: row.get(k) for k in RESULT_COLUMNS},
                           "dir": f"points/{point.key}"})
    columns, outcome.table = _table(sweep, table_rows)
    outcome.rows = table_rows
    out.mkdir(parents=True, exist_ok=True)
    remember()
    atomic.write_text(out / CSV, metrics_csv([{c: r.get(c) for c in columns}
                                              for r in table_rows]))
    title = f"# phys {sweep.command} sweep: {sweep.source}\n\n"
    atomic.write_text(out / MARKDOWN, title + outcome.table)
    _plot(sweep, table_rows, out / PLOT)
    return outcome
