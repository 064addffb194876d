"""``recorded:PATH``: a deterministic device fitted to recorded measurements.

The model is a :class:`~phys.train.twin.SurrogateTwin` (the family of the surrogate twin
of physics-aware training) fitted to the recorded pairs, a seeded tenth held out; its
held-out relative RMSE is in ``info.extra["rel_rmse"]`` and a warning says when it is
above :data:`~phys.train.twin.POOR_REL_RMSE`. The device is differentiable through the
model, so backpropagation and PAT can train through it.

A recording of more than ``max_rows`` rows is fitted on a seeded uniform sample of them
(read in blocks: a recording larger than memory is never loaded whole), the held-out
tenth taken from the sample; ``info.extra["fit"]`` says how many rows the recording held
(``rows_available``) and how many the fit used (``rows_used``).

The fitted model is cached beside the recording as ``NAME.physnn-fit-<key>.pt``, keyed by
the SHA-256 of the recording's bytes and the fit options, so the second open loads it.
Where that folder cannot be written the cache goes under
``phys.download.data_dir() / "fits"``, else under ``~/.cache/phys/fits`` (a shared,
read-only ``$PHYS_DATA``); where none can, the model is not cached (a
warning says so).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from phys.atomic import WriteError, atomic_path
from phys.device import Device, DeviceInfo
from phys.devices.recorded_io import (
    Recording,
    check_options,
    files_sha256,
    finite_range,
    read_recording,
    sample_rows,
)
from phys.devices.recorded_io import recording_files as _recording_files
from phys.download import data_dir
from phys.options import OptionError, Options, option
from phys.train.twin import POOR_REL_RMSE, SurrogateTwin

__all__ = ["MAX_FIT_ROWS", "MIN_FIT_ROWS", "FitOptions", "RecordedDevice", "fit_recording",
           "model_blob", "model_from_blob", "open_recorded", "read_fit_rows"]

#: Fewest recorded rows a fit takes (a tenth of them is held out).
MIN_FIT_ROWS = 20
#: Rows a fit samples from a larger recording by default (a fit of well under a minute
#: on one core with the default model).
MAX_FIT_ROWS = 100_000
_FORMAT = 1


@dataclass(frozen=True)
class FitOptions(Options):
    """How the surrogate is fitted (part of the cache key); each field is checked when
    the options are made (:class:`~phys.options.Options`)."""

    hidden: int = option(256, min=1, max=65_536, help="width of the surrogate's hidden "
                         "layers")
    depth: int = option(2, min=1, max=100, help="hidden layers of the surrogate")
    epochs: int = option(30, min=1, help="passes over the fitting rows")
    batch_size: int = option(256, min=1, help="rows per optimiser step")
    lr: float = option(2e-3, min=0.0, help="Adam learning rate (> 0)")
    seed: int = option(0, help="seeds the weights, the row sample, the held-out split and "
                       "the batches")
    max_rows: int = option(MAX_FIT_ROWS, min=MIN_FIT_ROWS, help="fit on a seeded uniform "
                           "sample of this many rows of a larger recording")

    def check(self) -> None:
        """The fields' checks, and ``lr > 0``."""
        super().check()
        if not self.lr > 0:
            raise OptionError(f"lr must be a positive number, got {self.lr!r}", "lr")


class _Answers(Device):
    """Answers the recorded inputs, in recorded order, with the recorded outputs."""

    def __init__(self, info: DeviceInfo, x: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__()
        self.info, self._x, self._y = info, x, y

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.equal(x, self._x):
            raise RuntimeError("a recorded fit queried other inputs than the recorded ones")
        return self._y


class RecordedDevice(Device):
    """A device answering with a surrogate model fitted to a recording.

    Args:
        model: The fitted surrogate (its info gives the sizes).
        source: The recording, as named.
        in_min: Smallest accepted input (default: the smallest recorded one).
        in_max: Largest accepted input (default: the largest recorded one).
        extra: Facts for ``info.extra`` (``rel_rmse``, ``fit``, ...).
    """

    def __init__(self, model: SurrogateTwin, source: str, *, in_min: float | None = None,
                 in_max: float | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__()
        model.eval()
        self._model = model
        fitted = model.info
        self.info = DeviceInfo(
            name=f"recorded:{source}", n_in=fitted.n_in, n_out=fitted.n_out,
            in_min=fitted.in_min if in_min is None else in_min,
            in_max=fitted.in_max if in_max is None else in_max, max_batch=1 << 16,
            differentiable=True, extra=extra or {})

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self._model.simulate(x)

    def vjp(self, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        """``grad_out @ J(x)`` of the fitted model: ``(B, n_in)``, ``(B, n_out)`` ->
        ``(B, n_in)``."""
        x = torch.as_tensor(x).to(torch.float32)
        return self._model.vjp(x, torch.as_tensor(grad_out).to(x.device))


def fit_recording(recording: Recording, options: FitOptions,
                  ) -> tuple[SurrogateTwin, dict[str, Any]]:
    """A surrogate fitted to ``recording``, and its report (``rel_rmse``, ``samples``,
    ``held_out``, ``rows_available``, ``rows_used``, ``dropped``, ``seconds``).

    ``recording`` is read with ``max_rows`` and ``seed`` of ``options``
    (:func:`read_fit_rows`); a recording with more rows is cut to a sample here.

    Raises:
        ValueError: fewer than :data:`MIN_FIT_ROWS` rows.
    """
    available = len(recording) if recording.available is None else recording.available
    idx = sample_rows(len(recording), options.max_rows, options.seed)
    if idx is not None:
        recording = replace(recording, inputs=recording.inputs[idx],
                            outputs=recording.outputs[idx],
                            rows=[recording.rows[i] for i in idx])
    n = len(recording)
    if n < MIN_FIT_ROWS:
        raise ValueError(f"recording {recording.source!r} has {n} usable row(s); a fit "
                         f"needs at least {MIN_FIT_ROWS}")
    lo, hi = finite_range(recording.inputs)
    n_in, n_out = recording.inputs.shape[1], recording.outputs.shape[1]
    info = DeviceInfo(f"recorded:{recording.source}", n_in, n_out, lo, hi, max_batch=n)
    gen = torch.Generator().manual_seed(options.seed)
    order = torch.randperm(n, generator=gen)  # fit() holds out the first tenth
    x = torch.from_numpy(recording.inputs)[order]
    y = torch.from_numpy(recording.outputs)[order]
    model = SurrogateTwin(info, hidden=options.hidden, depth=options.depth,
                          seed=options.seed)
    report = model.fit(_Answers(info, x, y), inputs=x, epochs=options.epochs,
                       batch_size=options.batch_size, lr=options.lr, count_flops=False)
    return model, {"rel_rmse": report["rel_rmse"], "samples": n,
                   "held_out": max(1, n // 10), "rows_available": available, "rows_used": n,
                   "dropped": recording.dropped, "seconds": report["seconds"]}


def read_fit_rows(spec: str, device: int, options: FitOptions) -> Recording:
    """The rows of recording ``spec`` that a fit with ``options`` uses: at most
    ``options.max_rows``, sampled with ``options.seed``."""
    return read_recording(spec, device, max_rows=options.max_rows, seed=options.seed)


def _cache_paths(files: tuple[Path, ...], key: str, cache_dir: str | None) -> list[Path]:
    name = f"{files[0].stem}.physnn-fit-{key}.pt"
    if cache_dir is not None:
        return [Path(cache_dir).expanduser() / name]
    paths = [files[0].parent / name, data_dir() / "fits" / name]
    home = Path.home() / ".cache" / "phys" / "fits" / name  # when $PHYS_DATA is read-only
    return paths if home in paths else [*paths, home]


def _writable(folder: Path) -> bool:
    """Whether ``folder`` (or the nearest folder above it that exists) may be written: it
    allows it, and its mode is not marked read-only for everyone (which even root
    respects here)."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)


def _cache_key(digest: str, options: FitOptions) -> str:
    blob = json.dumps({"format": _FORMAT, "sha256": digest, **asdict(options)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load_cached(paths: list[Path]) -> tuple[dict[str, Any], Path] | None:
    for path in paths:
        if path.is_file():
            try:
                return torch.load(path, map_location="cpu", weights_only=True), path
            except Exception as err:  # noqa: BLE001 - a bad cache file is fitted again
                warnings.warn(f"ignoring the unreadable fit cache {path}: {err}",
                              stacklevel=4)
    return None


def _save_cached(paths: list[Path], blob: dict[str, Any]) -> Path | None:
    for path in paths:
        if not _writable(path.parent):
            continue
        try:
            with atomic_path(path) as tmp:
                torch.save(blob, tmp)
                os.chmod(tmp, 0o644)  # a cache others may read, as the recording
        except (WriteError, OSError):
            continue
        return path
    folders = [str(p.parent) for p in paths]
    why = (f"{folders[0]} cannot be written" if len(folders) == 1 else
           f"neither {' nor '.join(folders)} can be written")
    warnings.warn(f"the fitted model is not cached: {why}", stacklevel=4)
    return None


def model_blob(model: SurrogateTwin, options: FitOptions) -> dict[str, Any]:
    """``model`` as plain data (``torch.load(..., weights_only=True)`` reads it back):
    its info and fit options as JSON, its weights."""
    return {"info": json.dumps(model.info.as_dict()), "options": json.dumps(asdict(options)),
            "state": model.state_dict()}


def model_from_blob(blob: dict[str, Any]) -> SurrogateTwin:
    """The surrogate :func:`model_blob` saved.

    Raises:
        KeyError, TypeError, ValueError, RuntimeError: ``blob`` is not such data.
    """
    info = DeviceInfo.from_dict(json.loads(blob["info"]))
    opts = FitOptions(**json.loads(blob["options"]))
    model = SurrogateTwin(info, hidden=opts.hidden, depth=opts.depth, seed=opts.seed)
    model.load_state_dict(blob["state"])
    return model


def open_recorded(address: str, *, device: int = 0, in_min: float | None = None,
                  in_max: float | None = None, cache: bool = True,
                  cache_dir: str | None = None, hidden: int = 256,
                  depth: int = 2, epochs: int = 30, batch_size: int = 256, lr: float = 2e-3,
                  seed: int = 0, max_rows: int = MAX_FIT_ROWS) -> RecordedDevice:
    """Open ``recorded:PATH``: a device fitted to the recording PATH names (see
    :mod:`phys.devices.recorded_io`), from the cache when it was fitted before.

    Args:
        address: ``"recorded:PATH"``.
        device: Which device of an HDF5 recording.
        in_min: Smallest accepted input (default: the smallest recorded one).
        in_max: Largest accepted input (default: the largest recorded one).
        cache: Load and save the fitted model (beside the recording, see the module).
        cache_dir: A folder for the cache instead.
        hidden, depth, epochs, batch_size, lr, seed, max_rows: The fit (see
            :class:`FitOptions`).

    Raises:
        FileNotFoundError: a missing recording file.
        ValueError: a bad recording (naming file and line) or too few rows for a fit.
    """
    from phys.devices.replay import _path_of

    spec = _path_of(address, "recorded")
    check_options(device, in_min, in_max)
    options = FitOptions(hidden, depth, epochs, batch_size, lr, seed, max_rows)
    t0 = time.perf_counter()
    _, files, part = _recording_files(spec, device)
    paths = _cache_paths(files, _cache_key(files_sha256(files, part), options),
                         cache_dir)
    found = _load_cached(paths) if cache else None
    if found is not None:
        blob, where = found
        model, extra = model_from_blob(blob), json.loads(blob["extra"])
    else:
        recording = read_fit_rows(spec, device, options)
        model, fit = fit_recording(recording, options)
        extra = {"recording": spec, "rel_rmse": fit["rel_rmse"], "fit": fit,
                 "rows": fit["rows_used"], "dropped": recording.dropped,
                 "sha256": recording.sha256()}
        if recording.info is not None:
            extra["recorded_device"] = recording.info.name
        blob = {**model_blob(model, options), "extra": json.dumps(extra)}
        where = _save_cached(paths, blob) if cache else None
    extra["cache"] = str(where) if where is not None else None
    extra["open_seconds"] = time.perf_counter() - t0
    if extra["rel_rmse"] > POOR_REL_RMSE:
        warnings.warn(f"recorded:{spec}: the fitted model is poor, held-out relative RMSE "
                      f"{extra['rel_rmse']:.3f} > {POOR_REL_RMSE}", stacklevel=3)
    return RecordedDevice(model, spec, in_min=in_min, in_max=in_max, extra=extra)

