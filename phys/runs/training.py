"""``phys train``: train what a :class:`~phys.experiment.TrainSpec` says, keeping the run's
files in a run directory, resuming it, and surviving a lab device that stops answering."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from phys.device import as_torch_device
from phys.runs.device_loss import DeviceGuard, SettingGuard
from phys.runs.keeper import Keeper, check_every
from phys.runs.layout import RunDir, jsonable
from phys.runs.lock import check_out
from phys.runs.measurements import MEASUREMENTS, Recorder, RecordPhases
from phys.runs.provenance import threads_used, versions
from phys.runs.state import Clock, check_kind, check_state, restore_train, train_state
from phys.threads import check_threads, set_threads
from phys.train.callbacks import Callback, EpochEnd

__all__ = ["check_run_options", "train"]

LOG = logging.getLogger("phys.progress")


def check_run_options(checkpoint_every: Any, device_wait: Any) -> None:
    """``ValueError`` unless ``checkpoint_every`` is ``None`` or an int >= 0 and
    ``device_wait`` a finite number >= 0 (the rules of
    :class:`~phys.experiment.RunOptions`)."""
    from phys.experiment import RunOptions

    check_every(checkpoint_every)
    RunOptions(device_wait=device_wait)


def _saved_state(spec: Any, run_dir: RunDir) -> tuple[dict[str, Any], Path]:
    """The checkpoint to resume from, verified (checksums, ``config.json``, epoch)."""
    state, used = run_dir.load(resuming=True)
    check_kind(state, "train", run_dir.path)
    check_state(state, used, epochs=spec.epochs)
    return state, used


def _prepare(spec: Any, run_dir: RunDir | None, *, resume: bool, overwrite: bool
             ) -> tuple[dict[str, Any], Any, Any, Any]:
    """The run's configuration, parsed device, dataset and checkpoint (``None``: a new
    run); refuses what does not fit (the run directory, its checkpoint) before the data
    loads and before any device opens."""
    from phys.experiment import load_data, prepare

    config = jsonable(vars(spec))
    state = used = None
    if run_dir is not None:
        run_dir.check("train", config, resume=resume, overwrite=overwrite)
        if resume:
            state, used = _saved_state(spec, run_dir)
    device = prepare(spec)  # the device is parsed here, once, and fails before the data
    dataset = load_data(spec)
    if state is not None:
        batches = len(range(0, len(dataset.x_train), spec.batch_size))
        check_state(state, used, epochs=spec.epochs, batches=batches)
    return config, device, dataset, state


def _finished(spec: Any, run_dir: RunDir) -> dict[str, Any]:
    """The results of the finished run in ``run_dir``, once it is checked to be this
    run (configuration, checkpoint); nothing is trained or written."""
    run_dir.check("train", jsonable(vars(spec)), resume=True)
    state, _ = _saved_state(spec, run_dir)
    LOG.info("%s is finished (%d epochs): nothing to resume, nothing written", run_dir.path,
             int(state["epoch"]))
    try:
        return json.loads(run_dir.results.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{run_dir.results}: unreadable results: {err}") from None


def _say_resumed(run_dir: RunDir, state: Mapping[str, Any]) -> None:
    """Log where a resumed run continues: its epoch and batch (1-based, the next ones)."""
    progress = state.get("progress") or {}
    done = int(progress.get("batches", 0))
    epoch = int(state["epoch"])
    LOG.info("resuming %s from epoch %d, batch %d (%d epochs and %d batches done)",
             run_dir.path, epoch + 1, done + 1, epoch, done)


def _callbacks(run_dir: RunDir | None, state: Callable[[], Mapping[str, Any]],
               settings: Mapping[str, Any], hint: str
               ) -> tuple[list[Callback], Keeper | None]:
    keeper = None if run_dir is None else Keeper(run_dir, state,
                                                  every=settings["checkpoint_every"])
    callbacks: list[Callback] = [] if keeper is None else [keeper]
    if settings.get("recorder") is not None:  # flushed before each checkpoint is taken
        callbacks.insert(0, RecordPhases(settings["recorder"], settings["checkpoint_every"]))
    callbacks.append(DeviceGuard(settings["device_wait"], hint, keeper))
    callbacks.append(SettingGuard(hint, keeper))
    if run_dir is not None and settings["tensorboard"]:
        from phys.runs.tensorboard import TensorBoardLog

        callbacks.append(TensorBoardLog(run_dir.path))
    if settings["on_epoch"] is not None:
        callbacks.append(EpochEnd(settings["on_epoch"]))
    return callbacks, keeper


def _build(spec: Any, device: Any, dataset: Any, state: Mapping[str, Any] | None,
           run_dir: RunDir | None, opened: list[Any], opener: Any, torch_device: Any,
           recorder: Recorder | None = None) -> tuple[Any, dict[str, Any], Clock]:
    """The trainer (restored from ``state`` when resuming), the extra facts for the
    results and the run's clock (started before PAT's twins are fitted, so their
    fitting counts in the run's seconds); devices opened are appended to ``opened``."""
    from phys.experiment import build, open_layer_device

    clock = Clock() if state is None else Clock(float(state["seconds"]))
    opener = opener or open_layer_device
    trainer, extra = build(spec, dataset.n_features, dataset.n_classes, opened,
                           device=device,
                           opener=opener if recorder is None else recorder.wrap(opener),
                           fit_twins=state is None, torch_device=torch_device)
    if state is None:
        return trainer, extra, clock
    restore_train(trainer, state, "train", run_dir.path)
    if recorder is not None:
        recorder.cut_to_counters()
    _say_resumed(run_dir, state)
    return trainer, dict(state["extra"]), clock


def _link_stats(trainer: Any) -> list[dict[str, Any]] | None:
    """Each serial device's link counters (resends, drops ...), ``None`` without one."""
    found = [{"device": dev.info.name, **dev.link.as_dict()} for dev in trainer.devices()
             if hasattr(getattr(dev, "link", None), "as_dict")]
    return found or None


def _results(spec: Any, trainer: Any, extra: Mapping[str, Any], seconds: float,
             keeper: Keeper | None, state: Mapping[str, Any] | None) -> dict[str, Any]:
    history = trainer.history
    results = {
        "trainer": spec.trainer,
        "test_accuracy": history[-1]["test_accuracy"],
        "train_accuracy": history[-1]["train_accuracy"],
        "epochs": trainer.epoch,
        "seconds": seconds,
        **trainer.device_usage(),
        **extra,
        "device_info": [layer.device.info.as_dict() for layer in trainer.network.layers],
        "n_features": trainer.n_features, "n_classes": trainer.n_classes,
        "config": dict(vars(spec)),
        "versions": versions(),
        **threads_used(),
    }
    links = _link_stats(trainer)
    if links is not None:
        results["link"] = links
    if keeper is not None:
        results["checkpoints"] = {"saved": keeper.saves, "seconds": keeper.seconds,
                                  "write_seconds": keeper.write_seconds,
                                  "resumed_from_epoch": None if state is None
                                  else int(state["epoch"])}
    return results


def _settings(*, checkpoint_every: Any, device_wait: Any, threads: Any, **rest: Any
              ) -> dict[str, Any]:
    """The run's settings for :func:`_callbacks`, checked (ValueError naming one)."""
    check_run_options(checkpoint_every, device_wait)
    check_threads(threads)
    return {"checkpoint_every": checkpoint_every, "device_wait": device_wait, **rest}


def train(spec: Any, *, out: str | Path | None = None, progress: bool = False,
          on_epoch: Callable[[dict[str, float]], None] | None = None, resume: bool = False,
          overwrite: bool = False, checkpoint_every: int | None = 200,
          device_wait: float = 300.0, opener: Any = None,
          resume_hint: str | None = None, threads: int | None = None,
          torch_device: str = "cpu", tensorboard: bool = True,
          record: bool | None = None) -> dict[str, Any]:
    """Train as ``spec`` (a :class:`~phys.experiment.TrainSpec`) says; with ``out``, keep
    the run's files there (config, checkpoints, metrics, event files, results, curve:
    see :mod:`phys.runs`).

    Args:
        spec: What to train.
        out: Run directory.
        progress: Progress bars on a terminal (else a line per epoch: ``phys.progress``).
        on_epoch: Called with each epoch's metrics.
        resume: Continue the run in ``out`` from its latest checkpoint that verifies
            (``spec`` must be the run's own); a finished run's results are returned.
        overwrite: Start again in an ``out`` that holds a run, finished or not.
        checkpoint_every: Batches between checkpoints within an epoch (0: epoch ends only).
        device_wait: Seconds to wait for a lab device that stops answering, then
            :class:`~phys.runs.DeviceLost`.
        opener, resume_hint: ``opener(device_spec, n_in, n_out, seed)`` opens each
            layer's device; the command that continues this run, for messages.
        threads, torch_device: torch's threads (``None``: as they are, see
            :mod:`phys.threads`); where the network and the simulators compute.
        tensorboard, record: Write event files into ``out``; every device query into
            ``out/measurements.h5`` (``None``: hardware, :mod:`phys.runs.measurements`).

    Returns:
        The results written to ``results.json`` (with :func:`~phys.runs.provenance.versions`,
        the threads, and ``link``: each serial device's link counters). ``out`` is locked
        while the run writes it (see :mod:`phys.runs.lock`).

    Raises:
        ValueError: unknown dataset, device or trainer, bad options, a trainer that
            needs gradients the device cannot give, or a run directory that does not fit
            (empty, a file, read-only; another configuration; a run there without
            ``resume`` or ``overwrite``) - before the data loads or a device opens.
        phys.runs.CheckpointError: (a ValueError) no checkpoint to resume from verifies,
            or its values are out of range.
        phys.runs.lock.RunLocked: another process writes ``out`` (its pid is named).
        phys.atomic.WriteError: a file of the run cannot be written (a full disk).
        phys.runs.DeviceLost: a device stopped answering for longer than ``device_wait``.
    """
    if out is None and resume:
        raise ValueError("resume needs the run directory (out)")
    settings = _settings(checkpoint_every=checkpoint_every, device_wait=device_wait,
                         tensorboard=tensorboard, on_epoch=on_epoch, threads=threads,
                         record=record)
    where = as_torch_device(torch_device)
    run_dir = None if out is None else RunDir(check_out(out))
    if threads is not None:
        set_threads(threads)
    with contextlib.nullcontext() if run_dir is None else run_dir.lock():
        if resume and run_dir.finished():
            return _finished(spec, run_dir)
        return _train(spec, run_dir, progress=progress, resume=resume, overwrite=overwrite,
                      opener=opener, torch_device=where, settings=settings,
                      hint=resume_hint or f"phys train --resume {out}")


def _train(spec: Any, run_dir: RunDir | None, *, progress: bool, resume: bool,
           overwrite: bool, opener: Any, torch_device: Any, settings: Mapping[str, Any],
           hint: str) -> dict[str, Any]:
    """:func:`train` with the run directory (if any) locked."""
    from phys.report import write_run

    config, device, dataset, state = _prepare(spec, run_dir, resume=resume,
                                              overwrite=overwrite)
    opened: list[Any] = []
    recorder, record = None, settings["record"]
    if record is None and state is not None and (run_dir.path / MEASUREMENTS).exists():
        record = True  # a resumed run goes on recording what it recorded
    if run_dir is not None and record is not False:
        recorder = Recorder(run_dir.path / MEASUREMENTS, record, resume=state is not None)
    settings = {**settings, "recorder": recorder}
    try:
        trainer, extra, clock = _build(spec, device, dataset, state, run_dir, opened, opener,
                                       torch_device, recorder)
        if run_dir is not None:
            run_dir.start("train", config, fresh=state is None)
        callbacks, keeper = _callbacks(
            run_dir, lambda: train_state(trainer, config, extra, clock.seconds()),
            settings, hint)
        data = [t.to(torch_device) for t in (dataset.x_train, dataset.y_train,
                                              dataset.x_test, dataset.y_test)]
        trainer.fit(*data, callbacks=callbacks, progress=progress)
        results = _results(spec, trainer, extra, clock.seconds(), keeper, state)
        if recorder is not None and recorder.recording is not None:
            results["recording"] = recorder.summary()
        if getattr(trainer, "physics", None) is not None:
            results["physics"] = trainer.physics.as_dict()
        if run_dir is not None:
            write_run(run_dir.path, results, trainer.history, None,
                      title=f"{spec.trainer} on {spec.device} / {spec.data}",
                      loss_label=trainer.loss_label)
        return results
    finally:
        for dev in opened:
            dev.close()
        if recorder is not None:
            recorder.close()
