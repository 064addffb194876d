"""What a sweep point runs: one strategy object per command (``train``, ``swap``).

A strategy knows the options its command takes (the sweep schema), how a point's grid
values become a full configuration, how to run that configuration in a run directory,
how to summarise a finished run as a row, and which device, if any, a point opens (for
the sweep to route an exclusive one through one holder).
"""

from __future__ import annotations

import statistics
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from phys.options import option_fields

__all__ = ["COMMANDS", "SwapCommand", "SweepCommand", "TrainCommand"]

#: Schema of one option: its type hint and its :func:`phys.options.option` metadata.
Schema = dict[str, tuple[Any, Mapping[str, Any]]]


class SweepCommand(ABC):
    """How a sweep runs the points of one command."""

    name: ClassVar[str]
    #: Other names a grid may use (``seeds`` for ``seed``).
    grid_aliases: ClassVar[dict[str, str]] = {"seeds": "seed"}
    #: Grid names that set an option of another name (both cannot be given).
    sets: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def options_class(self) -> type:
        """The dataclass whose fields are the command's options."""

    def schema(self) -> Schema:
        """Option name -> (type hint, metadata), generated from :meth:`options_class`."""
        return {f.name: (hint, f.metadata) for f, hint in option_fields(self.options_class())}

    def grid_schema(self) -> Schema:
        """Names only a grid takes, besides the options."""
        return {}

    def point_options(self, options: Mapping[str, Any],
                      values: Mapping[str, Any]) -> dict[str, Any]:
        """The options of the point with grid ``values``."""
        return {**options, **values}

    def config(self, options: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
        """The run's full configuration (defaults filled in, checked), as its run
        directory keeps it."""
        from phys.runs import jsonable

        return jsonable(vars(self.options_class()(**self.point_options(options, values))))

    #: Fields of a configuration that :meth:`check` reads.
    check_fields: ClassVar[tuple[str, ...]] = ()

    def check(self, config: Mapping[str, Any]) -> None:
        """Checks of a point's configuration beyond its options class's own, made when
        the sweep file is read (``ValueError`` or :class:`~phys.options.OptionError`)."""
        return None

    def resumable(self, out: Path) -> bool:
        """Whether run directory ``out`` holds saved progress of an earlier run."""
        from phys.runs import RunDir

        run = RunDir(out)
        return run.read_config() is not None and (run.has_checkpoint() or run.finished())

    @abstractmethod
    def run(self, config: Mapping[str, Any], out: Path, *, resume: bool,
            holders: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
        """Run one point in ``out``; returns its row (see :meth:`summary`)."""

    @abstractmethod
    def summary(self, results: Mapping[str, Any]) -> dict[str, Any]:
        """A row of the sweep's table from a run's ``results.json``."""

    def device(self, config: Mapping[str, Any]) -> Any:
        """The :class:`~phys.DeviceSpec` a point opens, or ``None``."""
        return None


class TrainCommand(SweepCommand):
    """Points of ``phys train``: options of :class:`~phys.experiment.TrainSpec`."""

    name = "train"
    check_fields = ("device", "device_options", "trainer", "twin", "twin_options", "data",
                    "data_options")

    def options_class(self) -> type:
        from phys.experiment import TrainSpec

        return TrainSpec

    def check(self, config: Mapping[str, Any]) -> None:
        """The checks of ``phys train``: the device, dataset and twin options
        (:func:`phys.experiment.prepare`)."""
        self.device(config)

    def run(self, config: Mapping[str, Any], out: Path, *, resume: bool,
            holders: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
        from phys.experiment import TrainSpec
        from phys.runs import train
        from phys.sweep.holder import holder_opener

        results = train(TrainSpec(**config), out=out, resume=resume, overwrite=True,
                        opener=holder_opener(holders) if holders else None,
                        checkpoint_every=settings["checkpoint_every"],
                        device_wait=settings["device_wait"],
                        resume_hint=settings.get("resume_hint"))
        return self.summary(results)

    def summary(self, results: Mapping[str, Any]) -> dict[str, Any]:
        return {key: results.get(key) for key in ("test_accuracy", "train_accuracy", "epochs",
                                                  "seconds", "device_queries",
                                                  "device_samples")}

    def device(self, config: Mapping[str, Any]) -> Any:
        from phys.experiment import TrainSpec, prepare

        return prepare(TrainSpec(**config))


class SwapCommand(SweepCommand):
    """Points of ``phys swap``: options of :class:`~phys.quantum.study.SwapConfig`; a grid
    takes ``level`` and ``seed``, each point training one level with one seed."""

    name = "swap"
    grid_aliases = {"seeds": "seed", "levels": "level"}
    sets = {"level": "levels", "seed": "first_seed"}

    def options_class(self) -> type:
        from phys.quantum.study import SwapConfig

        return SwapConfig

    def grid_schema(self) -> Schema:
        return {"level": (int, {}), "seed": (int, {})}

    def point_options(self, options: Mapping[str, Any],
                      values: Mapping[str, Any]) -> dict[str, Any]:
        config = dict(options)
        for key, value in values.items():
            if key == "level":
                config["levels"] = [value]
            elif key == "seed":
                config["first_seed"], config["seeds"] = value, 1
            else:
                config[key] = value
        return config

    def resumable(self, out: Path) -> bool:
        from phys.runs import RunDir

        return super().resumable(out) or (RunDir(out).read_config() is not None and any(
            (out / "runs").glob("*/checkpoint.pt")))

    def run(self, config: Mapping[str, Any], out: Path, *, resume: bool,
            holders: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
        from phys.quantum.study import SwapConfig
        from phys.runs.swap import run_study

        rows, _ = run_study(SwapConfig(**config), out, resume=resume, overwrite=True,
                            checkpoint_every=settings["checkpoint_every"])
        return self.summary({"rows": rows})

    def summary(self, results: Mapping[str, Any]) -> dict[str, Any]:
        rows = results["rows"]
        return {"test_accuracy": statistics.fmean(r["test_accuracy"] for r in rows),
                "train_accuracy": statistics.fmean(r["train_accuracy"] for r in rows),
                "epochs": rows[0]["epochs"], "runs": len(rows),
                "seconds": sum(r["seconds_per_epoch"] * r["epochs"] for r in rows)}


#: The commands a sweep runs, by name.
COMMANDS: dict[str, SweepCommand] = {c.name: c for c in (TrainCommand(), SwapCommand())}
