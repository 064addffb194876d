"""Callbacks: code that :meth:`Trainer.fit <phys.train.base.Trainer.fit>` runs at fixed
points of training, so that checkpoints, progress reports and device-loss handling stay
out of the training loop.

Examples::

    >>> class CountBatches(Callback):
    ...     def __init__(self):
    ...         self.batches = 0
    ...     def on_batch_end(self, trainer, batch):
    ...         self.batches += 1
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from phys.train.base import Trainer

__all__ = ["Callback", "CallbackList", "EpochEnd"]

T = TypeVar("T")

#: The kinds of calls :meth:`Callback.wrap` sees: a training step, or one batch of
#: evaluation (:meth:`~phys.train.base.Trainer.evaluate`).
KINDS = ("step", "predict")


class Callback:
    """Base class of the callbacks of :meth:`~phys.train.base.Trainer.fit`; every method
    does nothing until overridden.

    The order of calls: :meth:`on_fit_start` once; per epoch, :meth:`on_batch_end` after
    every training step, :meth:`on_evaluate` before each accuracy measured at its end,
    then :meth:`on_epoch_end` once the epoch is evaluated; :meth:`on_fit_end` once, also
    when training stops with an exception. Every call that queries devices runs through
    :meth:`wrap`.
    """

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first step of :meth:`~phys.train.base.Trainer.fit`."""

    def on_batch_end(self, trainer: Trainer, batch: int) -> None:
        """After a training step; ``batch`` counts the batches done in this epoch
        (1, 2, ...). :meth:`~phys.train.base.Trainer.state_dict` taken here resumes after
        that batch."""

    def on_evaluate(self, trainer: Trainer, split: str, samples: int | None) -> None:
        """Before the accuracy on ``split`` (``"train"`` or ``"test"``) is measured at an
        epoch's end, on ``samples`` samples (``None``: all of them)."""

    def on_epoch_end(self, trainer: Trainer, row: Mapping[str, Any]) -> None:
        """After an epoch is trained, evaluated and appended to ``trainer.history``
        (``row`` is that entry)."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """When :meth:`~phys.train.base.Trainer.fit` returns or raises."""

    def wrap(self, trainer: Trainer, kind: str, call: Callable[[], T]) -> T:
        """Run ``call`` (a training step when ``kind`` is ``"step"``, a batch of
        evaluation when ``"predict"``) and return its result; override to guard the
        calls that query devices (retry, log, save first ...)."""
        return call()


class EpochEnd(Callback):
    """Call ``fn(row)`` after every epoch (``row``: the epoch's metrics).

    Examples::

        >>> rows = []
        >>> callback = EpochEnd(rows.append)
    """

    def __init__(self, fn: Callable[[Mapping[str, Any]], Any]) -> None:
        if not callable(fn):
            raise ValueError(f"EpochEnd needs a callable, got {fn!r}")
        self.fn = fn

    def on_epoch_end(self, trainer: Trainer, row: Mapping[str, Any]) -> None:
        self.fn(row)


class CallbackList(Callback):
    """Several callbacks as one, called in order; :meth:`wrap` nests them, the first
    callback outermost.

    Raises:
        ValueError: an entry is not a :class:`Callback`.
    """

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)
        for i, callback in enumerate(self.callbacks):
            if not isinstance(callback, Callback):
                raise ValueError(f"callbacks[{i}] must be a phys.train.callbacks.Callback, "
                                 f"got {type(callback).__name__}")

    def on_fit_start(self, trainer: Trainer) -> None:
        for callback in self.callbacks:
            callback.on_fit_start(trainer)

    def on_batch_end(self, trainer: Trainer, batch: int) -> None:
        for callback in self.callbacks:
            callback.on_batch_end(trainer, batch)

    def on_evaluate(self, trainer: Trainer, split: str, samples: int | None) -> None:
        for callback in self.callbacks:
            callback.on_evaluate(trainer, split, samples)

    def on_epoch_end(self, trainer: Trainer, row: Mapping[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(trainer, row)

    def on_fit_end(self, trainer: Trainer) -> None:
        for callback in self.callbacks:
            callback.on_fit_end(trainer)

    def wrap(self, trainer: Trainer, kind: str, call: Callable[[], T]) -> T:
        for callback in reversed(self.callbacks):
            call = _wrapped(callback, trainer, kind, call)
        return call()


def _wrapped(callback: Callback, trainer: Trainer, kind: str,
             call: Callable[[], T]) -> Callable[[], T]:
    return lambda: callback.wrap(trainer, kind, call)
