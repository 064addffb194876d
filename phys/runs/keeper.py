"""The checkpoint keeper: a training callback that saves a run's state into its run
directory after every epoch and every N batches, written in the background."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from phys import atomic
from phys.runs.layout import RunDir
from phys.train.callbacks import Callback

__all__ = ["Keeper", "check_every"]


def check_every(every: Any) -> None:
    """``ValueError`` unless ``every`` (batches between checkpoints) is ``None`` or an
    int >= 0."""
    if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                              or every < 0):
        raise ValueError(f"checkpoint_every must be an int >= 0 batches, got {every!r}")


class Keeper(Callback):
    """Saves a run's state after every epoch and every ``every`` batches.

    The state is serialised where :meth:`save` is called (so it is the state of that
    moment); the file is written, fsynced and renamed by a background thread while
    training goes on, one write at a time (a save waits for the previous write). As a
    :class:`~phys.train.callbacks.Callback` it saves after every ``every`` batches (not
    right before an epoch's end), after every epoch (with ``metrics.csv``), and waits
    for the last write when training ends.

    Args:
        run: Where to save.
        state: Returns the state to save (called at each save).
        every: Batches between saves within an epoch (``None`` or 0: at epoch ends only).
        background: Write in a background thread (``False``: in :meth:`save`).

    Attributes:
        saves: Checkpoints saved.
        seconds: Seconds the caller spent in :meth:`save` and :meth:`flush` (what
            checkpoints cost training).
        write_seconds: Seconds spent writing files, in the background or not.

    Examples::

        >>> import tempfile
        >>> run = RunDir(tempfile.mkdtemp())
        >>> keeper = Keeper(run, lambda: {"epoch": 0}, every=100)
        >>> keeper.save(wait=True)
        >>> run.load()[0]
        {'epoch': 0}
    """

    def __init__(self, run: RunDir, state: Callable[[], Mapping[str, Any]], *,
                 every: int | None = None, background: bool = True) -> None:
        check_every(every)
        self.run, self.state, self.every = run, state, every or 0
        self.background = background
        self.saves, self.seconds, self.write_seconds = 0, 0.0, 0.0
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def _write(self, data: bytes, texts: Mapping[Path, str]) -> None:
        t0 = time.perf_counter()
        try:
            self.run.write(data)
            for path, text in texts.items():
                atomic.write_text(path, text)
        except BaseException as err:  # raised again by the next save or flush
            self._error = err
        self.write_seconds += time.perf_counter() - t0

    def _join(self) -> None:
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def save(self, *, wait: bool = False, texts: Mapping[Path, str] | None = None) -> None:
        """Save the state now, and write ``texts`` (path -> text) after it; ``wait``:
        return once everything is on disk."""
        t0 = time.perf_counter()
        data = self.run.serialize(self.state())
        texts = dict(texts or {})
        self._join()
        if self.background and not wait:
            self._writer = threading.Thread(target=self._write, args=(data, texts),
                                            name="phys-checkpoint")
            self._writer.start()
        else:
            self._write(data, texts)
            self._join()
        self.saves += 1
        self.seconds += time.perf_counter() - t0

    def flush(self) -> None:
        """Wait for the last write (raising its error, if it failed)."""
        t0 = time.perf_counter()
        self._join()
        self.seconds += time.perf_counter() - t0

    # -- as a callback ----------------------------------------------------------------
    def on_batch_end(self, trainer: Any, batch: int) -> None:
        if self.every and batch % self.every == 0 and batch != trainer.batches_per_epoch:
            self.save()

    def on_epoch_end(self, trainer: Any, row: Mapping[str, Any]) -> None:
        self.save(texts=self.run.metrics(trainer.history))

    def on_fit_end(self, trainer: Any) -> None:
        self.flush()
