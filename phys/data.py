"""Datasets: ``phys.data.load(name)`` returns train and test tensors.

``digits`` (scikit-learn's bundled 8x8 handwritten digits, 1,797 images) needs no
download and is the embedded default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Dataset", "load", "names"]


@dataclass(frozen=True)
class Dataset:
    """A classification dataset split into train and test.

    Shape:
        - ``x_train``: ``(N_train, n_features)`` float32, features scaled to ``[0, 1]``.
        - ``y_train``: ``(N_train,)`` int64 labels in ``0 .. n_classes - 1``.
        - ``x_test``, ``y_test``: likewise for the test split.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
                f"features={self.n_features}, classes={self.n_classes})")


def _digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn digits: 64 pixels in 0..16 scaled to [0, 1]; stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        bunch.data, bunch.target, test_size=test_fraction, random_state=seed,
        stratify=bunch.target,
    )

    def to_x(a):  # noqa: ANN001, ANN202
        return torch.as_tensor(a, dtype=torch.float32) / 16.0

    def to_y(a):  # noqa: ANN001, ANN202
        return torch.as_tensor(a, dtype=torch.int64)

    return Dataset("digits", to_x(x_tr), to_y(y_tr), to_x(x_te), to_y(y_te), n_classes=10)


_LOADERS: dict[str, Callable[[], Dataset]] = {"digits": _digits}


def names() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(_LOADERS)


def load(name: str) -> Dataset:
    """Load a dataset by name with its fixed, deterministic train/test split.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}")
    return _LOADERS[name]()
