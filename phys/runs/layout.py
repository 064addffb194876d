"""The files of a run directory (see :mod:`phys.runs`): their names, ``config.json`` and
refusing a run or a resume that does not fit, and writing checkpoints atomically and
reading them only when their checksums verify (:mod:`phys.runs.checksum`)."""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phys import atomic
from phys.runs.checksum import config_digest, seal, unseal
from phys.runs.lock import RunLock

__all__ = ["CONFIG", "FORMAT", "LATEST", "METRICS", "PREVIOUS", "RESULTS", "VERSION",
           "CheckpointError", "CheckpointWarning", "RunDir", "config_diff", "jsonable"]

CONFIG, LATEST, PREVIOUS = "config.json", "checkpoint.pt", "checkpoint.prev.pt"
RESULTS, METRICS = "results.json", "metrics.csv"
FORMAT, VERSION = "physnn-run", 1


class CheckpointError(ValueError):
    """No checkpoint in a run directory can be used: none verifies (the message names
    every file tried and why), or the one that does was written for another
    ``config.json`` or holds values out of range."""


class CheckpointWarning(RuntimeWarning):
    """The latest checkpoint was damaged or missing; an earlier one was used instead."""


def jsonable(obj: Any) -> Any:
    """``obj`` as JSON would give it back (tuples become lists), for comparing configs."""
    return json.loads(json.dumps(obj, sort_keys=True))


def config_diff(saved: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """One line per key whose value differs: ``"epochs: 5 in the run, 8 now"``."""
    saved, given = jsonable(dict(saved)), jsonable(dict(given))
    lines = []
    for key in sorted(set(saved) | set(given)):
        if saved.get(key, ...) != given.get(key, ...):
            old = repr(saved[key]) if key in saved else "(absent)"
            new = repr(given[key]) if key in given else "(absent)"
            lines.append(f"{key}: {old} in the run, {new} now")
    return lines


class RunDir:
    """The files of one run in directory ``path`` (see the module docstring).

    Examples::

        >>> import tempfile
        >>> run = RunDir(tempfile.mkdtemp())
        >>> run.start("train", {"epochs": 2}, fresh=True)
        >>> run.save({"epoch": 1})
        >>> run.save({"epoch": 2})
        >>> state, used = run.load()
        >>> state["epoch"], used.name
        (2, 'checkpoint.pt')
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.config_path = self.path / CONFIG
        self.latest = self.path / LATEST
        self.previous = self.path / PREVIOUS
        self.results = self.path / RESULTS
        self._config: str | None = None  # config_digest of config.json, once known

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- what is there ----------------------------------------------------------------
    def read_config(self) -> dict[str, Any] | None:
        """``{"kind": ..., "config": {...}}`` of the run here, or ``None``."""
        if not self.config_path.exists():
            return None
        try:
            saved = json.loads(self.config_path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{self.config_path}: unreadable run configuration: {err}") from None
        if not isinstance(saved, dict) or "config" not in saved:
            raise ValueError(f"{self.config_path}: not a run configuration")
        return saved

    def lock(self) -> RunLock:
        """The directory's writer lock, to hold (``with``) while a run writes here: a
        second writer is refused naming the holder's pid (see :mod:`phys.runs.lock`)."""
        return RunLock(self.path)

    def has_checkpoint(self) -> bool:
        return self.latest.exists() or self.previous.exists()

    def finished(self) -> bool:
        """Whether the run wrote its results."""
        return self.results.exists()

    def check(self, kind: str, config: Mapping[str, Any], *, resume: bool,
              overwrite: bool = False, saved: bool | None = None) -> None:
        """Refuse, before anything is opened or written, what would lose or mix up work.

        With ``resume``: the directory must hold a run of ``kind`` with this ``config``
        (otherwise the message lists every difference) and saved progress (``saved``;
        by default: a checkpoint) or results. Without: it must not hold a finished run,
        or an unfinished run with saved progress, unless ``overwrite``.

        Raises:
            ValueError: with what to do instead.
        """
        if saved is None:
            saved = self.has_checkpoint()
        config_saved = self.read_config()
        if resume:
            if config_saved is None:
                raise ValueError(f"cannot resume {self.path}: no run there (no {CONFIG})")
            if config_saved.get("kind") != kind:
                raise ValueError(f"cannot resume {self.path}: that is a "
                                 f"{config_saved.get('kind')!r} run, not a {kind!r} run")
            diff = config_diff(config_saved["config"], config)
            if diff:
                raise ValueError(f"cannot resume {self.path}: the run there has another "
                                 f"configuration:\n  " + "\n  ".join(diff))
            if not saved and not self.finished():
                raise ValueError(f"cannot resume {self.path}: no checkpoint to resume from")
        elif config_saved is not None and not overwrite:
            if self.finished():
                raise ValueError(f"{self.path} holds a finished run; keep it (choose "
                                 f"another directory) or run it again (overwrite=True)")
            if saved:
                raise ValueError(f"{self.path} holds an unfinished run; continue it "
                                 f"(resume=True) or start it again (overwrite=True)")

    # -- writing ----------------------------------------------------------------------
    def start(self, kind: str, config: Mapping[str, Any], *, fresh: bool) -> None:
        """Create the directory and write ``config.json``; ``fresh`` removes the
        checkpoints and results of an earlier run first. Temporary files that a killed
        run left behind are removed."""
        self.path.mkdir(parents=True, exist_ok=True)
        for name in (LATEST, PREVIOUS, METRICS, RESULTS, CONFIG, "curve.png"):  # a killed run
            for stale in (*self.path.glob(f".{name}.*.tmp"), *self.path.glob(f".{name}.*.link")):
                stale.unlink(missing_ok=True)
        if fresh:
            for path in (self.latest, self.previous, self.results, self.path / METRICS):
                path.unlink(missing_ok=True)
        saved = {"format": FORMAT, "version": VERSION, "kind": kind,
                 "config": jsonable(dict(config))}
        atomic.write_json(self.config_path, saved)
        self._config = config_digest(saved)

    def save(self, state: Mapping[str, Any]) -> None:
        """Write ``state`` as the latest checkpoint; the latest so far becomes the
        previous one. A reader always finds one complete checkpoint."""
        self.write(self.serialize(state))

    @staticmethod
    def serialize(state: Mapping[str, Any]) -> bytes:
        """``state`` as the bytes of a checkpoint file (``torch.save``)."""
        import torch

        buf = io.BytesIO()
        torch.save(dict(state), buf)
        return buf.getvalue()

    def write(self, data: bytes) -> None:
        """Write checkpoint bytes from :meth:`serialize` (see :meth:`save`), sealed with
        their checksum and that of ``config.json`` (:func:`~phys.runs.checksum.seal`).

        Raises:
            phys.atomic.WriteError: the file cannot be written (a full disk: the message
                says so); the checkpoints there are left as they were.
        """
        if self._config is None:
            self._config = config_digest(self.read_config())
        atomic.write_bytes(self.latest, seal(data, self._config),
                           before_replace=self._keep_previous)

    def _keep_previous(self) -> None:
        """Make the latest checkpoint the previous one, the latest staying in place
        until the new one replaces it (a hard link; a rename where links are not
        supported)."""
        if not self.latest.exists():
            return
        link = self.path / f".{PREVIOUS}.{os.getpid()}.link"
        try:
            link.unlink(missing_ok=True)
            os.link(self.latest, link)
        except OSError:
            os.replace(self.latest, self.previous)
        else:
            os.replace(link, self.previous)

    def write_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        atomic.write_text(*self.metrics(history).popitem())

    def metrics(self, history: Sequence[Mapping[str, Any]]) -> dict[Path, str]:
        """``{path of metrics.csv: its text}`` for ``history``."""
        from phys.report import metrics_csv

        return {self.path / METRICS: metrics_csv(history)}

    # -- reading ----------------------------------------------------------------------
    def load(self, *, resuming: bool = False) -> tuple[dict[str, Any], Path]:
        """The newest checkpoint whose checksum verifies, and its path.

        A damaged, truncated or missing ``checkpoint.pt`` is reported with a
        :class:`CheckpointWarning` naming the file and why, and ``checkpoint.prev.pt`` is
        used. With ``resuming`` the checkpoint must also have been written for the
        ``config.json`` that is there now (a finished run's model may be loaded with an
        edited one, e.g. its device moved to another port).

        Raises:
            CheckpointError: neither file verifies (the message says why for each), or
                (``resuming``) ``config.json`` was changed since the checkpoint was
                written.
        """
        problems = []
        for path in (self.latest, self.previous):
            state, problem = self._read(path)
            if state is None:
                problems.append(f"{path.name} {problem}")
                continue
            if resuming:
                self._check_config(state, path, problem)
            if problems:
                warnings.warn(f"{self.path}: {'; '.join(problems)}; resuming from {path.name} "
                              f"(epoch {state['epoch']})", CheckpointWarning, stacklevel=2)
            return state, path
        raise CheckpointError(f"{self.path}: no readable checkpoint: {'; '.join(problems)}")

    @staticmethod
    def _read(path: Path) -> tuple[dict[str, Any] | None, str]:
        """The state in checkpoint file ``path`` and the config digest it records, or
        ``None`` and what is wrong with the file."""
        import torch

        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, "is missing"
        except OSError as err:
            return None, f"cannot be read ({err.strerror})"
        config, why = unseal(data)
        if config is None:
            return None, f"is damaged or truncated: {why}"
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as err:  # a checkpoint sealed from bad bytes
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            return None, f"is damaged or truncated ({text})"
        if not isinstance(state, dict) or "epoch" not in state:
            return None, "is not a checkpoint of this run"
        return state, config

    def _check_config(self, state: Mapping[str, Any], path: Path, recorded: str) -> None:
        """``CheckpointError`` unless ``config.json`` is the one ``path`` was written for."""
        saved = self.read_config()
        if config_digest(saved) == recorded:
            return
        diff = []
        if saved is not None and isinstance(state.get("spec"), Mapping):
            diff = [line.replace(" in the run, ", f" in {path.name}, ").replace(
                " now", f" in {CONFIG}") for line in config_diff(state["spec"],
                                                                 saved["config"])]
        detail = f": {'; '.join(diff)}" if diff else ""
        raise CheckpointError(f"cannot resume {self.path}: {CONFIG} was changed after "
                              f"{path.name} was written (its checksum is not the one the "
                              f"checkpoint records); put it back or start the run again "
                              f"(overwrite=True){detail}")
