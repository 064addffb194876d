"""``phys swap``: the swap study in run directories, one per level and seed, resumable,
and its tables and plot.

Each run trains with :class:`~phys.train.supervised.SupervisedTrainer` on the shared
training loop, so a run's checkpoints and resume are those of ``phys train``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phys import atomic
from phys.quantum.study import (
    PAPER,
    TEST_BATCH,
    SwapConfig,
    build_level,
    epoch_rows,
    format_table,
    load_images,
    result_row,
    summarize,
)
from phys.runs.keeper import Keeper, check_every
from phys.runs.layout import RunDir, jsonable
from phys.runs.lock import check_out
from phys.runs.provenance import versions
from phys.runs.state import Clock, check_state, restore_train, train_state
from phys.train.callbacks import Callback

__all__ = ["CSV", "EPOCHS_CSV", "PLOT", "run_study", "train_level"]

CSV, EPOCHS_CSV, PLOT = "swap.csv", "swap_epochs.csv", "swap.png"


class _Progress(Callback):
    """Moves the study's progress bar by one step per training batch."""

    def __init__(self, bar: Any, level: int, seed: int, steps: int) -> None:
        self.bar, self.level, self.seed, self.steps = bar, level, seed, steps

    def on_fit_start(self, trainer: Any) -> None:  # a resumed run: its steps done
        self.bar.update(trainer.epoch * self.steps + trainer.batches_done)

    def on_batch_end(self, trainer: Any, batch: int) -> None:
        self.bar.set_description(f"level {self.level} seed {self.seed} "
                                 f"epoch {trainer.epoch + 1}", refresh=False)
        self.bar.set_postfix(loss=f"{trainer.last_loss:.3f}", refresh=False)
        self.bar.update(1)


def train_level(level: int, seed: int, images: Sequence[Any], config: SwapConfig, *,
                run: RunDir | None = None, resume: bool = False,
                checkpoint_every: int | None = None, device: Any = "cpu",
                callbacks: Sequence[Callback] = (), progress: bool | None = False
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train one level and seed on the torch ``device``; returns its result row and one
    row per epoch. ``progress`` is that of :meth:`~phys.train.base.Trainer.fit`.

    With ``run`` a checkpoint is saved after every epoch and every ``checkpoint_every``
    steps; ``resume`` continues from the latest one. torch's global random state is the
    caller's again afterwards (a resume restores the run's while it trains).
    """
    import torch

    from phys.train.batches import chunks

    images = [t.to(device) for t in images]
    x_tr, y_tr, x_te, y_te = images
    trainer = build_level(level, seed, config, device)
    spec = {**jsonable(vars(config)), "level": level, "seed": seed}
    test = list(chunks(x_te, y_te, TEST_BATCH)) if config.test_every_epoch else None
    with torch.random.fork_rng(devices=[]):
        clock = Clock()
        if resume:
            state, used = run.load(resuming=True)
            check_state(state, used, epochs=config.epochs,
                        batches=len(range(0, len(x_tr), config.batch_size)))
            restore_train(trainer, state, "swap", run.path)
            clock = Clock(float(state["seconds"]))
        keep = [] if run is None else [Keeper(run, lambda: train_state(
            trainer, spec, {}, clock.seconds(), kind="swap"), every=checkpoint_every)]
        trainer.fit(x_tr, y_tr, test, callbacks=[*keep, *callbacks], progress=progress)
    history = epoch_rows(trainer.history, level, seed)
    return result_row(config, level, seed, trainer, images, history), history


def _one_run(level: int, seed: int, run: RunDir, images: Sequence[Any], config: SwapConfig,
             settings: Mapping[str, Any], *, resume: bool, bar: Any, steps: int,
             **train: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run of the study: kept when finished and ``resume``, else trained (continued
    from its checkpoint with ``resume``); its results are written into ``run``."""
    if resume and run.finished():
        run.load(resuming=True)  # written for this config.json: refused if edited
        done = json.loads(run.results.read_text())
        bar.update(config.epochs * steps)
        return done["row"], done["history"]
    again = resume and run.has_checkpoint()
    if not again:
        run.start("swap-run", {**settings, "level": level, "seed": seed}, fresh=True)
    callbacks = [_Progress(bar, level, seed, steps), *train.pop("callbacks", ())]
    row, history = train_level(level, seed, images, config, run=run, resume=again,
                               callbacks=callbacks, progress=False if bar.disable else None,
                               **train)
    atomic.write_json(run.results, {"row": row, "history": history, "versions": versions()})
    return row, history


def _check_runs(runs: Mapping[tuple[int, int], RunDir], settings: Mapping[str, Any],
                resume: bool) -> None:
    """With ``resume``: each run begun must be the study's own (``config.json`` of the
    run and of the study not edited apart); refused before the images load."""
    for (level, seed), run in runs.items():
        if resume and run.read_config() is not None:
            run.check("swap-run", {**settings, "level": level, "seed": seed}, resume=True,
                      saved=True)


def _write_study(out: Path, config: SwapConfig, rows: list[dict[str, Any]],
                 epochs: list[dict[str, Any]], train_images: int) -> str:
    """Write swap.csv, swap_epochs.csv, swap.png and results.json; returns the table."""
    from phys.report import metrics_csv, plot_swap

    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / CSV, metrics_csv(rows))
    atomic.write_text(out / EPOCHS_CSV, metrics_csv(epochs))
    summary = summarize(rows)
    title = (f"HybridNet on {config.data}: {config.epochs} epoch(s), {train_images} train "
             f"images, {config.seeds} seed(s)")
    if 2 in config.levels and config.gain != 1:
        title += f", level-2 gain {config.gain}"
    plot_swap(summary, epochs, out / PLOT, title, PAPER.get(config.data))
    atomic.write_json(out / "results.json", {"rows": rows, "summary": summary,
                                             "versions": versions()})
    return format_table(summary, config.data)


def run_study(config: SwapConfig, out: str | Path, *, progress: bool = False,
              resume: bool = False, overwrite: bool = False,
              checkpoint_every: int | None = 200, device: Any = "cpu",
              callbacks: Sequence[Callback] = (), threads: int | None = None
              ) -> tuple[list[dict[str, Any]], str]:
    """Train every level and seed; write ``swap.csv`` (one row per run),
    ``swap_epochs.csv`` (one row per epoch), ``swap.png`` and ``results.json`` into ``out``.

    ``device`` is the torch device the models train on (``"cuda"`` for a GPU); it is not
    part of the configuration, so a study can resume on another device.

    Each run keeps a run directory ``out/runs/level{L}-seed{S}`` (see :mod:`phys.runs`)
    with a checkpoint after every epoch and every ``checkpoint_every`` steps; ``resume``
    skips the finished runs and continues the others from their checkpoints.
    ``callbacks`` are given to every run's :meth:`~phys.train.base.Trainer.fit`. torch's
    global random state is left as it was.

    ``threads`` sets torch's intra-op threads (``None``: left as they are; see
    :mod:`phys.threads`). ``out`` is locked while the study writes it (see
    :mod:`phys.runs.lock`).

    Returns:
        The per-run rows and the summary table (Markdown).

    Raises:
        ValueError: ``out`` cannot be a run directory (empty, a file, under a file,
            read-only), ``resume`` of a study with another configuration (the message
            lists the differences), or a study in ``out`` (finished, or unfinished with
            saved progress) without ``resume`` or ``overwrite``.
        phys.runs.CheckpointError: a run's checkpoint does not verify or is out of range.
        phys.runs.lock.RunLocked: another process writes ``out`` (its pid is named).
        phys.atomic.WriteError: a file cannot be written (a full disk).
    """
    from phys.threads import check_threads, set_threads

    check_every(checkpoint_every)
    if check_threads(threads) is not None:
        set_threads(threads)
    out = check_out(out)
    with RunDir(out).lock():
        return _study(config, out, progress=progress, resume=resume, overwrite=overwrite,
                      checkpoint_every=checkpoint_every, device=device, callbacks=callbacks)


def _study(config: SwapConfig, out: Path, *, progress: bool, resume: bool,
           overwrite: bool, checkpoint_every: int | None, device: Any,
           callbacks: Sequence[Callback]) -> tuple[list[dict[str, Any]], str]:
    """:func:`run_study` with ``out`` locked."""
    from tqdm.auto import tqdm

    from phys.train.progress import interactive

    top = RunDir(out)
    settings = jsonable(vars(config))
    runs = {(level, seed): RunDir(out / "runs" / f"level{level}-seed{seed}")
            for level in config.levels
            for seed in range(config.first_seed, config.first_seed + config.seeds)}
    saved = any(r.has_checkpoint() or r.finished() for r in runs.values())
    top.check("swap", settings, resume=resume, overwrite=overwrite, saved=saved)
    _check_runs(runs, settings, resume)
    images = load_images(config.data, subset=config.subset, test_subset=config.test_subset)
    top.start("swap", settings, fresh=not resume)
    steps = math.ceil(len(images[0]) / config.batch_size)
    rows, epochs = [], []
    with tqdm(total=len(runs) * config.epochs * steps, unit="step", dynamic_ncols=True,
              disable=not (progress and interactive())) as bar:
        for (level, seed), run in runs.items():
            row, history = _one_run(level, seed, run, images, config, settings,
                                    resume=resume, bar=bar, steps=steps, device=device,
                                    checkpoint_every=checkpoint_every, callbacks=callbacks)
            rows.append(row)
            epochs += history
    return rows, _write_study(out, config, rows, epochs, len(images[0]))
