"""A run's measurements: every query of its devices in ``DIR/measurements.h5``.

Each layer's device is wrapped in a :class:`~phys.recording.RecordingDevice` as it opens
(device ``k`` of the recording is layer ``k``'s), so everything it measures is kept:
training (phase ``train``), evaluation (``eval``) and a twin's fitting (``other``). The
recording is flushed (made durable) just before each checkpoint is taken, so a run killed
at any point has recorded at least every query its last checkpoint counts; a resumed run
cuts the recording back to the counters of the checkpoint it resumes from and appends
after them: every query is in the file exactly once.

Recording is on with ``record=True``, off with ``False``; by default (``None``) it is on
for devices whose info says they are one physical instance (``info.exclusive``: lab
hardware), where every query costs real time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from phys.train.callbacks import Callback

__all__ = ["MEASUREMENTS", "RecordPhases", "Recorder"]

MEASUREMENTS = "measurements.h5"


class Recorder:
    """Opens the run's recording when the first recorded device opens, and wraps the
    devices of the layers.

    Args:
        path: The recording (``DIR/measurements.h5``).
        record: ``True``, ``False`` or ``None`` (hardware only), see the module.
        resume: Continue an existing recording (else a new one replaces any there).
    """

    def __init__(self, path: Path, record: bool | None, resume: bool) -> None:
        self.path, self.record, self.resume = Path(path), record, resume
        self.recording: Any = None
        self.devices: list[Any] = []

    def _wanted(self, device: Any) -> bool:
        return bool(device.info.exclusive) if self.record is None else self.record

    def _open(self) -> Any:
        from phys.recording import Recording

        if self.recording is None:
            self.recording = (Recording.append(self.path) if self.resume and self.path.exists()
                              else Recording.create(self.path, overwrite=True))
        return self.recording

    def wrap(self, opener: Callable[..., Any]) -> Callable[..., Any]:
        """``opener`` whose devices are recorded (as device 0, 1, ... in opening order)."""
        def opened(*args: Any, **kwargs: Any) -> Any:
            device = opener(*args, **kwargs)
            if not self._wanted(device):
                return device
            from phys.recording import RecordingDevice

            recording = self._open()
            k = len(self.devices)
            wrapped = RecordingDevice(device, recording,
                                      k if k < len(recording.devices) else None)
            wrapped.phase = "other"  # until training starts: a twin's fitting
            self.devices.append(wrapped)
            return wrapped
        return opened

    def cut_to_counters(self) -> None:
        """After a resume has restored the devices' counters: drop the rows recorded after
        the checkpoint, so the resumed queries follow without duplicates.

        Raises:
            ValueError: the recording holds fewer rows than the checkpoint counts.
        """
        for k, device in enumerate(self.devices):
            rows, samples = self.recording.rows(k), int(device.stats.samples)
            if rows < samples:
                raise ValueError(f"{self.path}: device {k} has {rows} recorded rows but the "
                                 f"checkpoint counts {samples} samples; the recording is "
                                 f"missing queries")
            self.recording.truncate(k, samples)
            device.continue_after_last_row()

    def summary(self) -> dict[str, Any]:
        """For ``results.json``: the file, rows per device, the seconds the run spent
        recording in its own thread (buffering rows, waiting at flushes) and the processor
        seconds of the recording's writer thread."""
        rec = self.recording
        return {"file": self.path.name, "rows": [rec.rows(k) for k in range(len(rec.devices))],
                "seconds": round(rec.caller_seconds, 4),
                "writer_cpu_seconds": round(rec.writer_seconds, 4)}

    def close(self) -> None:
        if self.recording is not None and not self.recording.closed:
            self.recording.close()


class RecordPhases(Callback):
    """Marks each recorded query as training or evaluation, and flushes the recording
    before each checkpoint (put it before the checkpoint :class:`~phys.runs.Keeper`).

    Args:
        recorder: The run's :class:`Recorder`.
        every: Batches between checkpoints within an epoch (the Keeper's).
    """

    def __init__(self, recorder: Recorder, every: int | None) -> None:
        self.recorder, self.every = recorder, every

    def _phase(self, phase: str) -> None:
        for device in self.recorder.devices:
            device.phase = phase

    def _flush(self) -> None:
        if self.recorder.recording is not None:
            self.recorder.recording.flush()

    def on_fit_start(self, trainer: Any) -> None:
        self._phase("train")

    def on_evaluate(self, trainer: Any, split: str, samples: int | None) -> None:
        self._phase("eval")

    def on_batch_end(self, trainer: Any, batch: int) -> None:
        self._phase("train")
        if self.every and batch % self.every == 0:
            self._flush()

    def on_epoch_end(self, trainer: Any, row: Mapping[str, Any]) -> None:
        self._phase("train")
        self._flush()

    def on_fit_end(self, trainer: Any) -> None:
        self._flush()
