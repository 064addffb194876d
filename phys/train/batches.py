"""Where :meth:`Trainer.fit <phys.train.base.Trainer.fit>` takes its batches from:
tensors (shuffled by the trainer's generator) or any re-iterable of ``(x, labels)``
batches, such as a ``torch.utils.data.DataLoader``.

:class:`EpochShuffle` is the sampler that makes a ``DataLoader`` give the batches that
tensors give: one ``torch.randperm`` per epoch from a seeded generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from itertools import islice
from typing import Any

import torch
from torch.utils.data import Sampler

__all__ = ["EpochShuffle", "IterableBatches", "TensorBatches", "check_data", "chunks",
           "source"]

Shape = int | tuple[int, ...]


def _shape(n_features: Shape) -> tuple[int, ...]:
    return (n_features,) if isinstance(n_features, int) else tuple(n_features)


def check_data(x: Any, labels: Any, n_features: Shape, n_classes: int,
               what: str = "features") -> None:
    """Raise ``ValueError`` unless ``x (N, *n_features)`` is finite and ``labels (N,)``
    are int64 in ``0 .. n_classes - 1`` (``n_features``: an int, or the shape of one
    sample)."""
    shape = _shape(n_features)
    want = ", ".join(("N", *map(str, shape)))
    if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != shape or x.ndim < 2:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} must be a tensor ({want}), got {got}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or Inf")
    if not isinstance(labels, torch.Tensor) or labels.shape != (x.shape[0],):
        raise ValueError(f"labels must be a tensor ({x.shape[0]},) matching the {what}")
    if labels.dtype != torch.int64 or labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must be int64 in 0..{n_classes - 1}")


class EpochShuffle(Sampler[int]):
    """Sample indices ``0 .. n-1`` in the order ``torch.randperm(n, generator=generator)``,
    drawn anew each time it is iterated (each epoch).

    ``DataLoader(TensorDataset(x, labels), batch_size=B, sampler=EpochShuffle(N,
    torch.Generator().manual_seed(seed)))`` then gives the batches that ``fit(x, labels)``
    gives a trainer seeded ``seed`` (``torch.utils.data.RandomSampler`` draws twice an
    epoch, so its order differs).

    Args:
        n: Number of samples.
        generator: The generator drawn from (its state is the sampler's).
    """

    def __init__(self, n: int, generator: torch.Generator) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        self.n, self.generator = n, generator

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.n, generator=self.generator).tolist())

    def __len__(self) -> int:
        return self.n


class TensorBatches:
    """Batches of ``batch_size`` rows of tensors, in an order drawn per epoch."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        self.x, self.labels, self.batch_size = x, labels, batch_size
        self.n = x.shape[0]
        self.n_batches: int | None = len(range(0, self.n, batch_size))

    def new_order(self, generator: torch.Generator) -> torch.Tensor | None:
        return torch.randperm(self.n, generator=generator)

    def check_resume(self, order: torch.Tensor | None, done: int) -> None:
        if order is None or order.shape != (self.n,) or not 0 <= done <= (self.n_batches or 0):
            got = "no order" if order is None else f"{order.shape[0]} samples"
            raise ValueError(f"the resumed epoch ordered {got}, this data has {self.n}")

    def epoch(self, order: torch.Tensor | None, done: int
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches after the first ``done``."""
        assert order is not None
        for start in range(done * self.batch_size, self.n, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield self.x[idx], self.labels[idx]

    def for_evaluation(self, samples: int | None, seed: int, batch_size: int = 1024
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """A fixed random subset of ``samples`` rows (``None``: all) in chunks."""
        x, labels = self.x, self.labels
        if samples is not None and samples < self.n:
            pick = torch.randperm(self.n, generator=torch.Generator().manual_seed(seed))
            x, labels = x[pick[:samples]], labels[pick[:samples]]
        return chunks(x, labels, batch_size)


class IterableBatches:
    """The ``(x, labels)`` batches of a re-iterable (a ``DataLoader``, a list ...),
    each checked before it is used."""

    def __init__(self, batches: Iterable[Any], n_features: Shape, n_classes: int,
                 name: str) -> None:
        self.batches, self.name = batches, name
        self.n_features, self.n_classes = n_features, n_classes
        self.n_batches = len(batches) if isinstance(batches, Sized) else None

    def new_order(self, generator: torch.Generator) -> torch.Tensor | None:
        return None  # the iterable orders its batches itself

    def check_resume(self, order: torch.Tensor | None, done: int) -> None:
        if order is not None:
            raise ValueError(f"the resumed epoch was ordered by the trainer (tensors); "
                             f"{self.name} is an iterable of batches")

    def epoch(self, order: torch.Tensor | None, done: int
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches after the first ``done`` (those are drawn and skipped)."""
        for i, batch in enumerate(islice(self.batches, done, None), start=done):
            yield self._checked(batch, i)

    def for_evaluation(self, samples: int | None, seed: int
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches until ``samples`` samples are seen (``None``: one whole pass)."""
        seen = 0
        for i, batch in enumerate(self.batches):
            if samples is not None and seen >= samples:
                return
            x, labels = self._checked(batch, i)
            if samples is not None and seen + x.shape[0] > samples:
                x, labels = x[:samples - seen], labels[:samples - seen]
            seen += x.shape[0]
            yield x, labels

    def _checked(self, batch: Any, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(f"{self.name}: batch {i} must be a pair (x, labels), got "
                             f"{type(batch).__name__}")
        check_data(batch[0], batch[1], self.n_features, self.n_classes,
                   what=f"{self.name}: batch {i}'s features")
        return batch[0], batch[1]


def chunks(x: torch.Tensor, labels: torch.Tensor, size: int
           ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, labels)`` in consecutive chunks of ``size`` rows."""
    for start in range(0, x.shape[0], size):
        yield x[start:start + size], labels[start:start + size]


def source(x: Any, labels: Any, n_features: Shape, n_classes: int, batch_size: int,
           name: str = "x") -> TensorBatches | IterableBatches:
    """The batches of ``fit``'s data: tensors ``x`` with ``labels``, or a re-iterable of
    batches ``x`` with ``labels=None``.

    Raises:
        ValueError: tensors without labels, labels with an iterable, a one-shot iterator,
            or tensors that :func:`check_data` refuses.
    """
    if isinstance(x, torch.Tensor):
        if labels is None:
            raise ValueError(f"{name} is a tensor: give its labels too")
        check_data(x, labels, n_features, n_classes)
        return TensorBatches(x, labels, batch_size)
    if labels is not None:
        raise ValueError(f"{name} must be a tensor when labels are given, got "
                         f"{type(x).__name__}")
    if not isinstance(x, Iterable) or isinstance(x, Iterator):
        raise ValueError(f"{name} must be a tensor or a re-iterable of (x, labels) batches "
                         f"(a DataLoader, a list), got {type(x).__name__}")
    return IterableBatches(x, n_features, n_classes, name)
