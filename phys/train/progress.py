"""What a training run says while it runs: a progress bar on a terminal, plain log lines
everywhere else.

Log lines go through the :mod:`logging` logger ``phys.progress`` at level INFO, so a
user routes them like any other log (to a file, to nothing); the library adds no
handler, the ``phys`` command line adds one that writes to stderr. Lines never contain
carriage returns: one per epoch, and on long epochs one every ``interval`` seconds.

Examples::

    >>> import logging
    >>> logging.getLogger("phys.progress").setLevel(logging.WARNING)  # silence the lines
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from phys.train.callbacks import Callback

if TYPE_CHECKING:
    from phys.train.base import Trainer

__all__ = ["LOG", "ProgressBar", "ProgressLog", "epoch_line", "interactive"]

LOG = logging.getLogger("phys.progress")
#: Seconds between the lines of a long epoch.
INTERVAL = 30.0


def interactive(stream: Any = None) -> bool:
    """Whether progress bars can be drawn: ``stream`` (default stderr) is a terminal, or
    the code runs in a Jupyter kernel."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except ValueError:  # a closed stream
        return False
    return "ipykernel" in sys.modules


def _count(value: float) -> str:
    return f"{value:,.0f}"


def epoch_line(trainer: Trainer, row: Mapping[str, Any], previous: Mapping[str, Any] | None
               ) -> str:
    """One epoch's line: loss, accuracies, seconds, training device samples (and those of
    this epoch per second)."""
    parts = [f"epoch {row['epoch']}/{trainer.config.epochs}", f"loss {row['loss']:.4f}"]
    for key, name in (("train_accuracy", "train"), ("test_accuracy", "test")):
        if key in row:
            parts.append(f"{name} {row[key]:.4f}")
    seconds = float(row.get("seconds", 0.0))
    parts.append(f"{seconds:.1f} s")
    if "device_samples" in row:
        spent = row["device_samples"] - (previous or {}).get("device_samples", 0)
        rate = f", {_count(spent / seconds)}/s" if seconds > 0 else ""
        parts.append(f"device samples {_count(row['device_samples'])} "
                     f"(+{_count(spent)}{rate})")
    return "  ".join(parts)


class ProgressLog(Callback):
    """Log a line per epoch, and on long epochs one every ``interval`` seconds, to the
    logger ``phys.progress``.

    Args:
        interval: Seconds between the lines within an epoch (and the least length of an
            epoch whose evaluation is announced).
        logger: Where the lines go.
    """

    def __init__(self, interval: float = INTERVAL, logger: logging.Logger = LOG) -> None:
        self.interval, self.logger = float(interval), logger
        self._last = time.perf_counter()

    def on_fit_start(self, trainer: Trainer) -> None:
        self._last = time.perf_counter()

    def on_batch_end(self, trainer: Trainer, batch: int) -> None:
        now = time.perf_counter()
        if now - self._last < self.interval:
            return
        self._last = now
        total = trainer.batches_per_epoch
        samples = trainer.device_usage()["device_samples"]
        self.logger.info("epoch %d/%d  batch %d%s  loss %.4f  device samples %s",
                         trainer.epoch + 1, trainer.config.epochs, batch,
                         "" if total is None else f"/{total}", trainer.last_loss or 0.0,
                         _count(samples or 0))

    def on_evaluate(self, trainer: Trainer, split: str, samples: int | None) -> None:
        now = time.perf_counter()
        if now - self._last < self.interval:
            return
        self._last = now
        what = "all" if samples is None else _count(samples)
        self.logger.info("epoch %d/%d  evaluating on %s %s samples", trainer.epoch + 1,
                         trainer.config.epochs, what, split)

    def on_epoch_end(self, trainer: Trainer, row: Mapping[str, Any]) -> None:
        self._last = time.perf_counter()
        history = trainer.history
        previous = history[-2] if len(history) > 1 else None
        self.logger.info("%s", epoch_line(trainer, row, previous))


class ProgressBar(Callback):
    """A tqdm bar per epoch (for terminals and notebooks), closed with the epoch's loss
    and accuracies."""

    def __init__(self) -> None:
        self._bar: Any = None

    def _open(self, trainer: Trainer, done: int) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=trainer.batches_per_epoch, initial=done, unit="batch",
                    desc=f"epoch {trainer.epoch + 1}/{trainer.config.epochs}",
                    dynamic_ncols=True)

    def on_batch_end(self, trainer: Trainer, batch: int) -> None:
        if self._bar is None:
            self._bar = self._open(trainer, batch - 1)
        self._bar.set_postfix(loss=f"{trainer.last_loss or 0.0:.3f}", refresh=False)
        self._bar.update(1)

    def on_evaluate(self, trainer: Trainer, split: str, samples: int | None) -> None:
        if self._bar is not None:
            self._bar.set_description(f"epoch {trainer.epoch + 1}/{trainer.config.epochs}"
                                      f" evaluating {split}")

    def on_epoch_end(self, trainer: Trainer, row: Mapping[str, Any]) -> None:
        if self._bar is None:  # an epoch resumed after its last batch
            self._bar = self._open(trainer, trainer.batches_per_epoch or 0)
        self._bar.set_description(f"epoch {row['epoch']}/{trainer.config.epochs}")
        self._bar.set_postfix({name: f"{row[key]:.3f}" for key, name in (
            ("loss", "loss"), ("train_accuracy", "train"), ("test_accuracy", "test"))
            if key in row})
        self._close()

    def on_fit_end(self, trainer: Trainer) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_callback(progress: bool | None) -> Callback:
    """A :class:`ProgressBar` when ``progress`` and :func:`interactive`, nothing when
    ``progress`` is ``None`` (the caller reports progress itself), else a
    :class:`ProgressLog`."""
    if progress is None:
        return Callback()
    return ProgressBar() if progress and interactive() else ProgressLog()
