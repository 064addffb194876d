"""The swap study: train :class:`~phys.quantum.swap.HybridNet` at each replacement level.

The study's configuration, its images, the trainer of one level and seed, and its
tables; :func:`phys.runs.swap.run_study` runs it (what ``phys swap`` runs) in run
directories. Images are 32x32 as in "Let the Quantum Creep In": MNIST and
Fashion-MNIST (28x28) are padded by 2 pixels; scikit-learn's 8x8 digits are first
resized to 28x28 (bilinear), then padded the same way. Pixels in ``[0, 1]`` are
normalised with mean 0.5 and standard deviation 0.5 (padding becomes -1). Training is
Adam with cross-entropy on the logits, as in the paper's code (lr 5e-4, batch 200), with
:class:`~phys.train.supervised.SupervisedTrainer`.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F  # noqa: N812 - torch's convention

from phys.options import Options, option
from phys.quantum.swap import HybridNet
from phys.train.base import TrainConfig
from phys.train.supervised import SupervisedTrainer, drawing_from

__all__ = ["DATASETS", "PAPER", "SWAPPED", "SwapConfig", "build_level", "epoch_rows",
           "format_table", "load_images", "result_row", "summarize", "train_config"]

DATASETS = ("mnist", "fashion_mnist", "digits")
#: Last-epoch test accuracy (%) of the paper's code at levels 0 / 1 / 2 (50 epochs, 5 seeds).
PAPER = {"mnist": (92.30, 92.34, 96.92), "fashion_mnist": (83.62, 83.41, 86.57)}
SWAPPED = {0: "none", 1: "conv1, conv2", 2: "conv1, conv2, fc"}
N_CLASSES, IMAGE_SHAPE = 10, (1, 32, 32)
TEST_BATCH = 500  # images per batch of evaluation

#: Kept here for callers of their earlier home; they live in :mod:`phys.runs.swap`.
@dataclass
class SwapConfig(Options):
    """Options of a swap study (each field's help says what it does); ``gain`` is a number
    or ``"uniform"`` for ``2**n_qubits`` (see
    :class:`~phys.quantum.creep.DataReUploadingLinear`)."""

    data: str = option("digits", choices=DATASETS,
                       help="dataset: digits (8x8, bundled; resized to 28x28), mnist or "
                            "fashion_mnist; all padded to 32x32")
    levels: tuple[int, ...] = option((0, 1, 2), choices=tuple(SWAPPED),
                                     help="replacement levels to train: 0 classical, 1 both "
                                          "convolutions quantum, 2 also the linear layer")
    seeds: int = option(3, min=1, max=1000,
                       help="runs per level, seeded first_seed, first_seed + 1, ...")
    epochs: int = option(5, min=1, max=100_000, help="training epochs per run")
    subset: int | None = option(None, min=1, help="train on this many training images (a "
                                "fixed random choice) instead of all")
    test_subset: int | None = option(None, min=1, help="test on this many test images")
    batch_size: int = option(200, min=1, max=1_000_000, help="training batch size")
    lr: float = option(5e-4, min=1e-12, help="Adam learning rate")
    reps: int = option(10, min=1, max=1000, help="repetitions of the quantum linear layer")
    gain: float | str = option(1.0, help="factor on the quantum linear layer's probabilities "
                               "at level 2: a number > 0 or 'uniform' (2**qubits, so the "
                               "uniform state reads 1; learns far faster than 1)")
    first_seed: int = option(0, min=0, max=2**62, help="seed of each level's first run")
    test_every_epoch: bool = option(False, help="measure test accuracy after every epoch "
                                    "(into swap_epochs.csv), not only after the last")

    def __post_init__(self) -> None:
        if isinstance(self.levels, list):
            self.levels = tuple(self.levels)
        super().__post_init__()

    def check(self) -> None:
        super().check()
        if not self.levels:
            raise ValueError("levels must name at least one level (0, 1, 2)")
        if self.gain != "uniform" and (isinstance(self.gain, str) or not self.gain > 0):
            raise ValueError(f"gain must be a number > 0 or 'uniform', got {self.gain!r}")


def _to_32(x: torch.Tensor) -> torch.Tensor:
    """``(N, 1, h, w)`` pixels in ``[0, 1]`` -> ``(N, 1, 32, 32)`` normalised."""
    if x.shape[-2:] != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    return (F.pad(x, (2, 2, 2, 2)) - 0.5) / 0.5


def _take(x: torch.Tensor, y: torch.Tensor, n: int | None,
          seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None or n >= len(x):
        return x, y
    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[keep], y[keep]


def load_images(name: str, *, subset: int | None = None, test_subset: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)`` with images ``(N, 1, 32, 32)``.

    ``subset`` / ``test_subset`` keep that many images, the same ones for every level and
    seed.
    """
    from phys import data

    if name == "digits":
        ds = data.load("digits")
        x_tr, x_te = (x.reshape(-1, 1, 8, 8) for x in (ds.x_train, ds.x_test))
    elif name in DATASETS:
        ds = data.load(name, flatten=False)
        x_tr, x_te = ds.x_train, ds.x_test
    else:
        raise ValueError(f"swap study: data must be one of {', '.join(DATASETS)}, "
                         f"got {name!r}")
    x_tr, y_tr = _take(x_tr, ds.y_train, subset, 0)
    x_te, y_te = _take(x_te, ds.y_test, test_subset, 1)
    return _to_32(x_tr.float()), y_tr, _to_32(x_te.float()), y_te


def train_config(config: SwapConfig, seed: int) -> TrainConfig:
    """The training options of one run: Adam with ``config.lr``, ``config.batch_size``,
    batches ordered by ``seed``, and the running training accuracy (no second pass)."""
    return TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                       seed=seed, train_accuracy="running")


def build_level(level: int, seed: int, config: SwapConfig,
                device: str | torch.device = "cpu") -> SupervisedTrainer:
    """The trainer of one run: a :class:`HybridNet` at ``level`` initialised from a
    generator seeded ``seed`` (torch's global random state is left as it was), on the
    torch ``device``.

    Examples::

        >>> a = build_level(0, 3, SwapConfig(data="digits"))
        >>> b = build_level(0, 3, SwapConfig(data="digits"))
        >>> torch.equal(a.network.fc.weight, b.network.fc.weight)
        True
    """
    with drawing_from(torch.Generator().manual_seed(seed)):
        model = HybridNet(level, reps=config.reps, gain=config.gain)
    return SupervisedTrainer(model, N_CLASSES, IMAGE_SHAPE, train_config(config, seed),
                             device=device)


def epoch_rows(history: Sequence[Mapping[str, Any]], level: int,
               seed: int) -> list[dict[str, Any]]:
    """The trainer's per-epoch metrics as the study's rows (``swap_epochs.csv``): level,
    seed, epoch, train loss (mean over batches) and accuracy (of the training steps),
    seconds, and test accuracy when measured every epoch."""
    rows = []
    for h in history:
        row = {"level": level, "seed": seed, "epoch": h["epoch"], "train_loss": h["loss"],
               "train_accuracy": h["train_accuracy"], "seconds": h["seconds"]}
        if "test_accuracy" in h:
            row["test_accuracy"] = h["test_accuracy"]
        rows.append(row)
    return rows


def result_row(config: SwapConfig, level: int, seed: int, trainer: SupervisedTrainer,
               images: Sequence[torch.Tensor], history: Sequence[Mapping[str, Any]]
               ) -> dict[str, Any]:
    """One run's row (``swap.csv``); the test accuracy is the last epoch's, measured now
    unless ``config.test_every_epoch`` did."""
    x_tr, _, x_te, y_te = images
    last = history[-1].get("test_accuracy")
    return {
        "data": config.data, "level": level, "swapped": SWAPPED[level], "seed": seed,
        "epochs": config.epochs, "train_images": len(x_tr), "test_images": len(x_te),
        "test_accuracy": trainer.evaluate(x_te, y_te, TEST_BATCH) if last is None else last,
        "train_accuracy": history[-1]["train_accuracy"],
        "train_loss": history[-1]["train_loss"],
        "parameters": sum(p.numel() for p in trainer.network.parameters()),
        "seconds_per_epoch": statistics.fmean(h["seconds"] for h in history),
    }


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per level: test accuracy mean and standard deviation (over seeds; 0 for one
    seed), parameters and mean seconds per epoch."""
    out = []
    for level in sorted({r["level"] for r in rows}):
        runs = [r for r in rows if r["level"] == level]
        acc = [100 * r["test_accuracy"] for r in runs]
        out.append({
            "level": level, "swapped": SWAPPED[level], "runs": len(runs),
            "test_accuracy_mean": statistics.fmean(acc),
            "test_accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "parameters": runs[0]["parameters"],
            "seconds_per_epoch": statistics.fmean(r["seconds_per_epoch"] for r in runs),
        })
    return out


def format_table(summary: Sequence[dict[str, Any]], data: str) -> str:
    """The summary as a Markdown table, with the paper's results where there are some."""
    paper = PAPER.get(data)
    head = "| level | swapped | test accuracy (%) | parameters | s / epoch |"
    rule = "|---|---|---|---|---|"
    if paper:
        head = head.replace(" parameters |", " paper's code (%) | parameters |")
        rule += "---|"
    lines = [head, rule]
    for s in summary:
        cells = [str(s["level"]), s["swapped"],
                 f"{s['test_accuracy_mean']:.2f} ± {s['test_accuracy_std']:.2f} "
                 f"({s['runs']} seed{'s' if s['runs'] > 1 else ''})"]
        if paper:
            cells.append(f"{paper[s['level']]:.2f}")
        cells += [f"{s['parameters']:,}", f"{s['seconds_per_epoch']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
