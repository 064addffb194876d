"""Trained runs are models: open a finished ``phys train`` run for inference.

:func:`load_run` rebuilds the network a run trained, loads its final weights and opens
its devices again, so the run predicts and evaluates like the trained model it is::

    with phys.load_run("runs/demo") as model:
        labels = model.predict(x)            # (B, n_features) -> (B,)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["RunModel", "evaluate_run", "load_run", "predict_file"]


class RunModel(nn.Module):
    """A trained run's network with its devices open, for inference.

    Attributes:
        network: The trained network (``PhyLLNetwork`` or ``PhysicalClassifier``).
        spec: The run's :class:`~phys.experiment.TrainSpec`.
        results: The run's ``results.json``.
        path: The run directory.

    Shape:
        - ``predict(x)``: ``(B, n_features) -> (B,)`` labels.
    """

    def __init__(self, trainer: Any, spec: Any, results: dict[str, Any], path: Path,
                 opened: list[Any]) -> None:
        super().__init__()
        self.network = trainer.network
        self.spec, self.results, self.path = spec, results, path
        self._trainer, self._opened = trainer, opened
        self.n_features, self.n_classes = trainer.n_features, trainer.n_classes

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Labels ``(B,)`` for features ``x (B, n_features)``, by the run's own readout."""
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.n_features:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor (B, {self.n_features}), got {shape}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or Inf")
        return self._trainer.predict(x.float())

    forward = predict

    def evaluate(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        """Accuracy on ``x (N, n_features)``, ``labels (N,)``, as the run measured it."""
        from phys.train.base import check_data

        check_data(x, labels, self.n_features, self.n_classes)
        return self._trainer.evaluate(x, labels)

    def devices(self) -> list[Any]:
        """The devices the network queries."""
        return self._trainer.devices()

    def close(self) -> None:
        """Close every device the run opened; calling it again does nothing."""
        for device in self._opened:
            device.close()

    def __enter__(self) -> RunModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finished_run(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The saved configuration and results of the finished run at ``path``."""
    import json

    from phys.runs import RunDir

    run = RunDir(path)
    if not path.is_dir():
        raise ValueError(f"{path}: no run directory there")
    saved = run.read_config()
    if saved is None:
        raise ValueError(f"{path}: not a run directory (config.json is missing)")
    if saved.get("kind") != "train":
        raise ValueError(f"{path}: a {saved.get('kind')!r} run, not a 'train' run")
    if not run.results.exists():
        raise ValueError(f"{path}: the run has not finished (results.json is missing); "
                         f"resume it first")
    try:
        results = json.loads(run.results.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{run.results}: unreadable results: {err}") from None
    return saved["config"], results


def _sizes(spec: Any, results: dict[str, Any]) -> tuple[int, int]:
    """``(n_features, n_classes)`` of the run's dataset (from its results, else the data)."""
    if "n_features" in results and "n_classes" in results:
        return int(results["n_features"]), int(results["n_classes"])
    from phys import data

    dataset = data.load(spec.data, **spec.data_options)
    return dataset.n_features, dataset.n_classes


def load_run(path: str | os.PathLike[str]) -> RunModel:
    """The model a finished ``phys train`` run trained, with its devices opened again.

    Args:
        path: The run directory (``--out`` of ``phys train``).

    Returns:
        A :class:`RunModel`; close it (or use it as a context manager) to close its
        devices.

    Raises:
        ValueError: ``path`` is not a finished train run (the message names what is
            missing), or a device of the run cannot be opened (the message names it).
    """
    from phys.experiment import TrainSpec, build
    from phys.runs import RunDir

    path = Path(path)
    config, results = _finished_run(path)
    spec = TrainSpec(**config)
    n_features, n_classes = _sizes(spec, results)
    state, _ = RunDir(path).load()
    opened: list[Any] = []
    try:
        trainer, _ = build(spec, n_features, n_classes, opened, fit_twins=False)
    except Exception as err:
        for device in opened:
            device.close()
        raise ValueError(f"{path}: cannot open device {spec.device!r} of the run again: "
                         f"{err}") from err
    try:
        trainer.network.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as err:
        for device in opened:
            device.close()
        raise ValueError(f"{path}: the checkpoint does not fit the run's network: {err}") \
            from None
    return RunModel(trainer, spec, results, path, opened)


def evaluate_run(path: str | os.PathLike[str], data: str | None = None,
                 data_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Test accuracy of a finished run, measured again on its reopened devices, written
    to ``eval.json`` in the run directory (``eval-NAME.json`` for another dataset).

    Args:
        path: The run directory.
        data: Dataset to test on (default: the run's own, with its options).
        data_options: Options of ``data`` (default: the run's when ``data`` is its own).

    Returns:
        ``test_accuracy``, ``data``, ``test_samples``, the device queries and samples the
        evaluation took, and ``file`` (where it was written).
    """
    from phys import atomic
    from phys import data as datasets

    with load_run(path) as model:
        name = data or model.spec.data
        options = data_options if data_options is not None else (
            model.spec.data_options if name == model.spec.data else {})
        dataset = datasets.load(name, **options)
        accuracy = model.evaluate(dataset.x_test, dataset.y_test)
        stats = [d.stats for d in model.devices()]
        result = {"test_accuracy": accuracy, "data": name, "data_options": dict(options),
                  "test_samples": int(dataset.x_test.shape[0]),
                  "device_queries": sum(s.queries for s in stats),
                  "device_samples": sum(s.samples for s in stats)}
    target = Path(path) / ("eval.json" if name == model.spec.data else f"eval-{name}.json")
    atomic.write_json(target, result)
    return {**result, "file": str(target)}


def predict_file(path: str | os.PathLike[str], inputs: str | os.PathLike[str],
                 out: str | os.PathLike[str] | None = None) -> Path:
    """Labels of a finished run for the feature rows in ``inputs`` (a ``.npy`` file of
    shape ``(B, n_features)``), written as int64 ``.npy`` to ``out`` (default
    ``predictions.npy`` in the run directory); returns where.

    Raises:
        ValueError: the input file cannot be read as a real array of that shape, or
            holds NaN or Inf (nothing reaches a device).
    """
    import io

    import numpy as np

    from phys import atomic

    try:
        array = np.load(inputs, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{inputs}: cannot read a .npy array: {err}") from None
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{inputs}: expected real numbers, got dtype {array.dtype}")
    target = Path(out) if out is not None else Path(path) / "predictions.npy"
    with load_run(path) as model:
        try:
            labels = model.predict(torch.as_tensor(array, dtype=torch.float32))
        except ValueError as err:
            raise ValueError(f"{inputs}: {err}") from None
    buffer = io.BytesIO()
    np.save(buffer, labels.numpy().astype(np.int64))
    atomic.write_bytes(target, buffer.getvalue())
    return target
