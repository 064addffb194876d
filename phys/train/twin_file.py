"""Files of digital twins fitted to a recording (``phys twin fit``), for physics-aware
training that spends no device queries on fitting its twins (``twin="FILE.pt"``).

A twin file holds one :class:`~phys.train.twin.SurrogateTwin` per recorded device, fitted
as ``recorded:`` fits them (:func:`phys.devices.recorded.fit_recording`); device ``k`` of
a run's recording is layer ``k`` of that run, and twin ``k`` serves layer ``k`` of a PAT
run. The file is plain data (``torch.load(path, weights_only=True)`` reads it): each twin's
sizes, the input range it was fitted for, its fit report and weights.

Examples::

    >>> import phys, numpy as np, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> x = np.random.default_rng(0).uniform(-1, 1, (400, 3)).astype(np.float32)
    >>> np.save(folder / "x.npy", x); np.save(folder / "y.npy", np.tanh(x[:, :2]))
    >>> twins = fit_twins(f"{folder}/x.npy,{folder}/y.npy", in_min=-1.0, in_max=1.0,
    ...                   options=FitOptions(hidden=32, epochs=30, batch_size=32))
    >>> digest = save_twins(folder / "twin.pt", twins, "x.npy,y.npy")
    >>> load_twins(folder / "twin.pt").twins[0].model.info.n_out
    2
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from phys.atomic import atomic_path
from phys.device import DeviceInfo
from phys.devices.recorded import (
    FitOptions,
    fit_recording,
    model_blob,
    model_from_blob,
    read_fit_rows,
)
from phys.devices.recorded_io import check_options, count_devices
from phys.train.twin import POOR_REL_RMSE, SurrogateTwin

__all__ = ["FORMAT", "FitOptions", "FittedTwin", "TwinFile", "fit_twins", "is_twin_file",
           "load_twins", "save_twins"]

#: What a twin file says it is, and its layout's version.
FORMAT, VERSION = "physnn-twins", 1
#: How a twin file is named (``twin="FILE.pt"``).
SUFFIX = ".pt"


@dataclass
class FittedTwin:
    """One fitted twin.

    Attributes:
        device: Which device of the recording it models (layer ``device`` of a run).
        model: The surrogate.
        in_min, in_max: The input range of the device it models: as given, else the
            recorded device's (an HDF5 recording), else the recorded inputs' range.
        options: How it was fitted.
        report: The fit's report (``rel_rmse``, ``rows_available``, ``rows_used``,
            ``seconds``, ...).
    """

    device: int
    model: SurrogateTwin
    in_min: float
    in_max: float
    options: FitOptions = field(default_factory=FitOptions)
    report: dict[str, Any] = field(default_factory=dict)


def is_twin_file(value: str) -> bool:
    """Whether a ``twin`` option names a twin file (ends in ``.pt``)."""
    return value.lower().endswith(SUFFIX) and len(value) > len(SUFFIX)


def fit_twins(spec: str, *, devices: Sequence[int] | None = None,
              options: FitOptions | None = None, in_min: float | None = None,
              in_max: float | None = None,
              on_fit: Callable[[FittedTwin], None] | None = None) -> list[FittedTwin]:
    """Fit a twin to each device of the recording ``spec`` (anything ``recorded:`` opens).

    Args:
        spec: The recording.
        devices: Which devices (default: every one the recording holds).
        options: The fit (:class:`~phys.devices.recorded.FitOptions`).
        in_min, in_max: The devices' input range (default: the recorded device's, from
            an HDF5 recording; from a pair of files, the recorded inputs' range).
        on_fit: Called with each twin once it is fitted.

    Raises:
        FileNotFoundError, ValueError: as :func:`phys.devices.recorded_io.read_recording`;
            a device the recording does not hold; too few rows.
    """
    options = options or FitOptions()
    check_options(0, in_min, in_max)
    held = count_devices(spec)
    chosen = list(range(held)) if devices is None else list(devices)
    for k in chosen:
        check_options(k, None, None)
        if k >= held:
            raise ValueError(f"recording {spec!r} holds {held} device(s), no device {k}")
    fitted = []
    for k in chosen:
        t0 = time.perf_counter()
        recording = read_fit_rows(spec, k, options)
        model, report = fit_recording(recording, options)
        report["seconds"] = time.perf_counter() - t0  # the reading included
        info = recording.info or model.info
        lo = info.in_min if in_min is None else in_min
        hi = info.in_max if in_max is None else in_max
        twin = FittedTwin(k, model, float(lo), float(hi), options, report)
        if report["rel_rmse"] > POOR_REL_RMSE:
            warnings.warn(f"the twin of device {k} of {spec!r} is poor: held-out relative "
                          f"RMSE {report['rel_rmse']:.3f} > {POOR_REL_RMSE}", stacklevel=2)
        if on_fit is not None:
            on_fit(twin)
        fitted.append(twin)
    return fitted


def save_twins(path: str | Path, twins: Sequence[FittedTwin], source: str,
               sha256: str | None = None) -> str:
    """Write ``twins`` to ``path`` atomically; returns the file's SHA-256.

    Args:
        path: The twin file (ends in ``.pt``).
        twins: What :func:`fit_twins` returned.
        source: The recording they were fitted to (kept in the file).
        sha256: The recording's checksum, when known (kept in the file).
    """
    if not is_twin_file(str(path)):
        raise ValueError(f"a twin file's name ends in {SUFFIX}, got {str(path)!r}")
    blob = {"format": FORMAT, "version": VERSION, "source": source, "sha256": sha256,
            "twins": [{**model_blob(t.model, t.options), "device": t.device,
                       "range": [t.in_min, t.in_max], "report": json.dumps(t.report)}
                      for t in twins]}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return file_sha256(Path(path))


def file_sha256(path: Path) -> str:
    """SHA-256 of the bytes of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class TwinFile:
    """A twin file, read and checked by :func:`load_twins`: its ``twins`` by device."""

    path: Path
    sha256: str
    source: str
    twins: dict[int, FittedTwin]

    def for_layer(self, layer: int, info: DeviceInfo) -> SurrogateTwin:
        """The twin of layer ``layer`` (0-based), checked against its device's ``info``.

        Raises:
            ValueError: naming the file and layer - no twin for it, or other sizes or
                another input range than the device's.
        """
        where = f"twin {str(self.path)!r}: layer {layer + 1}"
        if layer not in self.twins:
            raise ValueError(f"{where} needs the twin of recorded device {layer}, but the "
                             f"file holds twins of device(s) "
                             f"{', '.join(map(str, sorted(self.twins)))} only (phys twin "
                             f"fit without --device fits every device)")
        twin = self.twins[layer]
        got = twin.model.info
        if (got.n_in, got.n_out) != (info.n_in, info.n_out):
            raise ValueError(f"{where}: the twin takes {got.n_in} inputs and gives "
                             f"{got.n_out} outputs, but the layer's device {info.name!r} "
                             f"takes {info.n_in} and gives {info.n_out}")
        tol = 1e-6 * (info.in_max - info.in_min)
        if not (math.isclose(twin.in_min, info.in_min, rel_tol=1e-6, abs_tol=tol)
                and math.isclose(twin.in_max, info.in_max, rel_tol=1e-6, abs_tol=tol)):
            raise ValueError(f"{where}: the twin was fitted for inputs in [{twin.in_min:g}, "
                             f"{twin.in_max:g}], but the layer's device {info.name!r} takes "
                             f"[{info.in_min:g}, {info.in_max:g}] (a recording of input "
                             f"files: give the device's range to phys twin fit)")
        return twin.model

    def note(self, layer: int) -> dict[str, Any]:
        """What ``results.json`` says of layer ``layer``'s twin."""
        report = self.twins[layer].report
        return {"kind": "file", "file": str(self.path), "sha256": self.sha256,
                "recording": self.source, "device": layer, "device_samples": 0,
                **{k: report[k] for k in ("rel_rmse", "rows_used") if k in report}}


def load_twins(path: str | Path) -> TwinFile:
    """Read and check the twin file at ``path`` (no device is needed).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: naming the file - not a twin file (unreadable, another format or
            version, a twin that does not load).
    """
    path = Path(path).expanduser()
    where = f"twin {str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no such file (phys twin fit RECORDING --out "
                                f"{path} writes one)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever torch finds wrong with the bytes
        raise ValueError(f"{where}: not a file of twins (phys twin fit writes them; "
                         f"torch.load failed with {type(err).__name__})") from None
    if not isinstance(blob, Mapping) or blob.get("format") != FORMAT:
        raise ValueError(f"{where}: not a file of twins (phys twin fit writes them)")
    if blob.get("version") != VERSION:
        raise ValueError(f"{where}: twin file version {blob.get('version')!r}, this "
                         f"physnn reads version {VERSION}")
    twins = {}
    for i, entry in enumerate(blob.get("twins") or ()):
        twin = _twin_from(entry, f"{where} twin {i}")
        twins[twin.device] = twin
    if not twins:
        raise ValueError(f"{where}: holds no twins")
    return TwinFile(path, file_sha256(path), str(blob.get("source")), twins)


def _twin_from(entry: Any, where: str) -> FittedTwin:
    try:
        model = model_from_blob(entry)
        lo, hi = (float(v) for v in entry["range"])
        options = FitOptions(**json.loads(entry["options"]))
        device, report = int(entry["device"]), json.loads(entry["report"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where} does not load: {type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) or device < 0:
        raise ValueError(f"{where}: a bad input range [{lo}, {hi}] or device {device}")
    return FittedTwin(device, model, lo, hi, options, report)
