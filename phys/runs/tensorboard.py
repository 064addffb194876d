"""Live monitoring: a training callback that writes TensorBoard event files.

Pointed at a run directory, ``tensorboard --logdir runs`` then shows every run by its
directory name while it trains. The ``tensorboard`` package is optional
(``pip install physnn[tensorboard]``); without it the callback warns once and does nothing.

Tags (each epoch's at step = the epoch number, 1-based; the batches' at step = the global
batch index, ``epochs done * batches per epoch + batch``):

- ``epoch/loss``, ``epoch/train_accuracy``, ``epoch/test_accuracy`` (on the epochs that
  have them), ``epoch/device_samples``, ``epoch/device_queries`` (training's running
  totals), ``epoch/lab_seconds`` (devices that estimate it), ``epoch/queries_per_second``
  (the epoch's training queries per wall second of the epoch), ``epoch/learning_rate``
  (``epoch/learning_rate{i}`` per optimiser when there are several), ``epoch/loss_layer{i}``
  (mean over the epoch's batches, for trainers that report ``layer_losses``);
- histograms (:data:`BINS` equal buckets between the smallest and largest finite value)
  ``weights/NAME`` of every parameter of the network and ``measurements/layer{i}`` of what
  the ``i``-th :class:`~phys.nn.DeviceLayer` returned on the epoch's last training batch
  (recorded by hooks: no extra device query);
- every ``every`` batches: ``batch/loss``, ``batch/loss_layer{i}``,
  ``batch/device_samples``.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from phys import atomic
from phys.nn.device_layer import DeviceLayer, device_layers
from phys.train.callbacks import Callback

if TYPE_CHECKING:
    from phys.train.base import Trainer

__all__ = ["INSTALL", "TensorBoardLog"]

T = TypeVar("T")

#: What to install for TensorBoard logging.
INSTALL = "pip install physnn[tensorboard]"

#: Tag prefixes this callback writes, by the scale of their steps.
EPOCH_TAGS = ("epoch/", "weights/", "measurements/")
BATCH_TAGS = ("batch/",)

#: Buckets of each histogram (TensorBoard draws about 30).
BINS = 64


class TensorBoardLog(Callback):
    """Writes TensorBoard event files into ``log_dir`` while a trainer fits (the tags are
    listed in :mod:`phys.runs.tensorboard`).

    Measurements are taken from the network's :class:`~phys.nn.DeviceLayer` modules by
    hooks registered in :meth:`on_fit_start` and removed in :meth:`on_fit_end`: logging
    costs no device query. Only the epoch's last training step is kept (detached, where
    it was computed), its histogram drawn at the epoch's end. With backprop they are the
    simulator's outputs.

    A fit resumed from a checkpoint writes into the same directory: the events of this
    callback's tags at steps after the resumed position (written after that checkpoint by
    the run that stopped) are removed from the existing event files (each rewritten
    atomically), and the new writer starts with TensorBoard's purge marker at the resumed
    batch step, so that no step appears twice.

    Args:
        log_dir: Directory of the event files (a run directory).
        every: Batches between batch scalars (those whose global batch index is a
            multiple of it); 0: epoch scalars only. Batch scalars are left out when the
            number of batches per epoch is unknown (an iterable without ``len``).

    Raises:
        ValueError: ``log_dir`` is not a path or cannot be made (at :meth:`on_fit_start`),
            ``every`` is not an int >= 0.

    Examples::

        >>> import tempfile
        >>> log = TensorBoardLog(tempfile.mkdtemp(), every=10)
        >>> log.every
        10
    """

    def __init__(self, log_dir: str | Path, every: int = 50) -> None:
        if not isinstance(log_dir, (str, Path)) or not str(log_dir):
            raise ValueError(f"log_dir must be a directory path, got {log_dir!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"every must be an int >= 0 batches, got {every!r}")
        self.log_dir, self.every = Path(log_dir), every
        self._writer: Any = None
        self._writer_class: Any = None
        self._hooks: list[Callable[[], None]] = []
        self._measured: dict[int, torch.Tensor] = {}
        self._capture = False
        self._resume: tuple[int, int] = (0, 0)
        self._queries = 0.0
        self._layer_sums: list[float] = []
        self._layer_batches = 0

    # -- the callback -----------------------------------------------------------------
    def on_fit_start(self, trainer: Trainer) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self._writer_class = None
            warnings.warn(f"TensorBoard logging is off: the tensorboard package is not "
                          f"installed ({INSTALL})", stacklevel=2)
            return
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"log_dir {self.log_dir}: cannot make the directory "
                             f"({err.strerror or err})") from err
        if not os.access(self.log_dir, os.W_OK | os.X_OK):
            raise ValueError(f"log_dir {self.log_dir}: the directory cannot be written")
        self._writer_class = SummaryWriter
        self._resume = (trainer.epoch, trainer.batches_done)
        history = trainer.history
        self._queries = float(history[-1].get("device_queries", 0) if history
                              else trainer.device_usage()["device_queries"] or 0)
        self._layer_sums, self._layer_batches = [], 0
        self._measured = {}
        self._hooks = [self._hook(i, layer) for i, layer in
                       enumerate(device_layers(trainer.network))]

    def wrap(self, trainer: Trainer, kind: str, call: Callable[[], T]) -> T:
        """Record measurements during the epoch's last training step."""
        if self._writer_class is None or kind != "step":
            return call()
        per_epoch = trainer.batches_per_epoch
        self._capture = per_epoch is None or trainer.batches_done + 1 >= per_epoch
        try:
            return call()
        finally:
            self._capture = False

    def on_batch_end(self, trainer: Trainer, batch: int) -> None:
        if self._writer_class is None:
            return
        layers = getattr(trainer, "layer_losses", None)
        if layers:
            if len(self._layer_sums) != len(layers):
                self._layer_sums, self._layer_batches = [0.0] * len(layers), 0
            self._layer_sums = [s + float(v) for s, v in zip(self._layer_sums, layers,
                                                             strict=True)]
            self._layer_batches += 1
        per_epoch = trainer.batches_per_epoch
        if not self.every or per_epoch is None:
            return
        step = trainer.epoch * per_epoch + batch
        if step % self.every:
            return
        writer = self._open(trainer)
        if trainer.last_loss is not None:
            writer.add_scalar("batch/loss", trainer.last_loss, step)
        for i, value in enumerate(layers or ()):
            writer.add_scalar(f"batch/loss_layer{i}", float(value), step)
        samples = trainer.device_usage()["device_samples"]
        if samples is not None:
            writer.add_scalar("batch/device_samples", samples, step)

    def on_epoch_end(self, trainer: Trainer, row: Mapping[str, Any]) -> None:
        if self._writer_class is None:
            return
        writer, step = self._open(trainer), int(row["epoch"])
        for key, value in self._epoch_scalars(trainer, row).items():
            writer.add_scalar(f"epoch/{key}", value, step)
        for name, param in trainer.network.named_parameters():
            add_histogram(writer, f"weights/{name}", param, step)
        for i, measured in sorted(self._measured.items()):
            add_histogram(writer, f"measurements/layer{i}", measured, step)
        self._measured = {}
        writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        for remove in self._hooks:
            remove()
        self._hooks, self._measured = [], {}
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- helpers ----------------------------------------------------------------------
    def _epoch_scalars(self, trainer: Trainer, row: Mapping[str, Any]) -> dict[str, float]:
        """The epoch's scalars by tag name (after ``epoch/``)."""
        scalars = {key: float(row[key]) for key in (
            "loss", "train_accuracy", "test_accuracy", "device_samples", "device_queries",
            "lab_seconds") if row.get(key) is not None}
        queries, seconds = row.get("device_queries"), row.get("seconds")
        if queries is not None:
            spent = float(queries) - self._queries
            self._queries = float(queries)
            if seconds and seconds > 0 and spent >= 0:
                scalars["queries_per_second"] = spent / float(seconds)
        optimizers = list(getattr(trainer, "optimizers", ()))
        for i, opt in enumerate(optimizers):
            name = "learning_rate" if len(optimizers) == 1 else f"learning_rate{i}"
            scalars[name] = float(opt.param_groups[0]["lr"])
        if self._layer_batches:
            for i, total in enumerate(self._layer_sums):
                scalars[f"loss_layer{i}"] = total / self._layer_batches
        self._layer_sums, self._layer_batches = [], 0
        return {k: v for k, v in scalars.items() if math.isfinite(v)}

    def _hook(self, i: int, layer: DeviceLayer) -> Callable[[], None]:
        """Record layer ``i``'s outputs while :attr:`_capture` is set, from its forward
        pass and from direct calls of its ``measure`` (PhyLL's first block); returns what
        undoes it."""
        def keep(output: Any) -> None:
            if self._capture and isinstance(output, torch.Tensor):
                self._measured[i] = output.detach()

        def after_forward(module: nn.Module, args: Any, output: Any) -> None:
            keep(output)

        handle = layer.register_forward_hook(after_forward)
        had_own = "measure" in vars(layer)
        previous = layer.measure

        def measure(x: torch.Tensor) -> torch.Tensor:
            out = previous(x)
            keep(out)
            return out

        layer.measure = measure  # type: ignore[method-assign]

        def remove() -> None:
            handle.remove()
            if had_own:
                layer.measure = previous  # type: ignore[method-assign]
            else:
                vars(layer).pop("measure", None)

        return remove

    def _open(self, trainer: Trainer) -> Any:
        """The writer, made on first use: once the epoch length is known, the events
        after the resumed position are removed from the directory's event files."""
        if self._writer is not None:
            return self._writer
        epochs, done = self._resume
        per_epoch = trainer.batches_per_epoch
        last_batch = None if per_epoch is None else epochs * per_epoch + done
        dropped = drop_events_after(self.log_dir, epochs, last_batch)
        purge = None if last_batch is None or not dropped.found else last_batch + 1
        self._writer = self._writer_class(log_dir=str(self.log_dir), purge_step=purge)
        return self._writer


def add_histogram(writer: Any, tag: str, values: torch.Tensor, step: int,
                  bins: int = BINS) -> None:
    """Write a histogram of ``values``' finite entries: ``bins`` equal buckets from their
    min to their max, counted by ``torch.histc`` where the tensor lives (one pass, no
    copy to the CPU, unlike ``SummaryWriter.add_histogram``'s sort in float64)."""
    v = values.detach().reshape(-1)
    if not v.is_floating_point():
        v = v.double()
    if not v.numel():
        return
    lo, hi = (float(t) for t in torch.aminmax(v))
    if not (math.isfinite(lo) and math.isfinite(hi)):  # a NaN or an infinity: left out
        v = v[torch.isfinite(v)]
        if not v.numel():
            return
        lo, hi = (float(t) for t in torch.aminmax(v))
    if hi > lo:
        counts = torch.histc(v.float(), bins=bins, min=lo, max=hi).tolist()
        limits = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)[1:].tolist()
    else:
        counts, limits = [float(v.numel())], [hi]
    writer.add_histogram_raw(
        tag, min=lo, max=hi, num=int(v.numel()), sum=float(v.sum(dtype=torch.float64)),
        sum_squares=float(torch.sum(v.double().square())), bucket_limits=limits,
        bucket_counts=counts, global_step=step)


class Dropped:
    """What :func:`drop_events_after` did: event files ``found``, events ``dropped``."""

    def __init__(self) -> None:
        self.found = 0
        self.dropped = 0


def _records(data: bytes) -> list[bytes]:
    """The whole records of a TFRecord file's bytes, stopping at one cut short or
    damaged (a run killed while writing)."""
    from tensorboard.summary.writer.record_writer import masked_crc32c

    out, pos = [], 0
    while pos + 12 <= len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack_from("<I", data, pos + 8)
        end = pos + 12 + length + 4
        if header_crc != masked_crc32c(header) or end > len(data):
            break
        record = data[pos + 12:pos + 12 + length]
        if struct.unpack_from("<I", data, end - 4)[0] != masked_crc32c(record):
            break
        out.append(record)
        pos = end
    return out


def _keep(record: bytes, last_epoch: int, last_batch: int | None) -> bool:
    """Whether an event stays: not one of this callback's tags past the resumed step."""
    from tensorboard.compat.proto import event_pb2

    event = event_pb2.Event.FromString(record)
    if not event.HasField("summary"):
        return True
    for value in event.summary.value:
        if value.tag.startswith(EPOCH_TAGS) and event.step > last_epoch:
            return False
        if value.tag.startswith(BATCH_TAGS) and last_batch is not None \
                and event.step > last_batch:
            return False
    return True


def drop_events_after(log_dir: str | Path, last_epoch: int,
                      last_batch: int | None) -> Dropped:
    """Remove, from the event files in ``log_dir``, the events of
    :class:`TensorBoardLog`'s epoch tags at steps after ``last_epoch`` and of its batch
    tags after ``last_batch`` (``None``: keep them); other events stay. Each file that
    changes is rewritten atomically, under its own name (a TensorBoard reading it keeps
    what it read)."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    result = Dropped()
    for path in sorted(Path(log_dir).glob("*tfevents*")):
        if not path.is_file():
            continue
        result.found += 1
        data = path.read_bytes()
        records = _records(data)
        kept = [r for r in records if _keep(r, last_epoch, last_batch)]
        if len(kept) == len(records) and sum(len(r) + 16 for r in records) == len(data):
            continue
        result.dropped += len(records) - len(kept)
        with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            writer = RecordWriter(fh)
            for record in kept:
                writer.write(record)
    return result
