"""Recordings: every device query of a run, kept as data in an HDF5 file.

* :class:`Recording` writes ``measurements.h5`` (:meth:`Recording.create`,
  :meth:`Recording.append` to continue one);
* :class:`RecordingDevice` wraps a device and records each query it forwards;
* :func:`open` reads a recording lazily; the layout is in :mod:`phys.recording.layout`.
"""

from __future__ import annotations

from phys.recording.layout import FORMAT, PHASES, VERSION
from phys.recording.reader import Column, DeviceRecording, RecordingFile, Setting
from phys.recording.reader import open_recording as open  # noqa: A004 - phys.recording.open
from phys.recording.recorder import RecordingDevice
from phys.recording.writer import Recording

__all__ = ["FORMAT", "PHASES", "VERSION", "Column", "DeviceRecording", "Recording",
           "RecordingDevice", "RecordingFile", "Setting", "open"]
