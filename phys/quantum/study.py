"""The swap study: train :class:`~phys.quantum.swap.HybridNet` at each replacement level.

What ``phys swap`` runs. Images are 32x32 as in "Let the Quantum Creep In": MNIST and
Fashion-MNIST (28x28) are padded by 2 pixels; scikit-learn's 8x8 digits are first
resized to 28x28 (bilinear), then padded the same way. Pixels in ``[0, 1]`` are
normalised with mean 0.5 and standard deviation 0.5 (padding becomes -1). Training is
Adam with cross-entropy on the logits, as in the paper's code (lr 5e-4, batch 200).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F  # noqa: N812 - torch's convention

from phys import atomic
from phys.quantum.swap import HybridNet

__all__ = ["DATASETS", "PAPER", "SwapConfig", "format_table", "load_images", "run_study",
           "summarize"]

DATASETS = ("mnist", "fashion_mnist", "digits")
#: Last-epoch test accuracy (%) of the paper's code at levels 0 / 1 / 2 (50 epochs, 5 seeds).
PAPER = {"mnist": (92.30, 92.34, 96.92), "fashion_mnist": (83.62, 83.41, 86.57)}
SWAPPED = {0: "none", 1: "conv1, conv2", 2: "conv1, conv2, fc"}
CSV, EPOCHS_CSV, PLOT = "swap.csv", "swap_epochs.csv", "swap.png"


@dataclass
class SwapConfig:
    """Options of a swap study.

    Args:
        data: ``"mnist"``, ``"fashion_mnist"`` or ``"digits"``.
        levels: Replacement levels to train (0, 1, 2).
        seeds: Runs per level, seeded ``first_seed .. first_seed + seeds - 1``.
        epochs: Training epochs per run.
        subset: Train on this many training images (a fixed random choice) instead of all.
        test_subset: Test on this many test images instead of all.
        batch_size: Training batch size.
        lr: Adam learning rate.
        reps: Repetitions of the quantum linear layer.
        gain: Factor on the quantum linear layer's probabilities at level 2: a number, or
            ``"uniform"`` for ``2**n_qubits`` (see
            :class:`~phys.quantum.creep.DataReUploadingLinear`).
        first_seed: Seed of the first run of each level.
        test_every_epoch: Also measure test accuracy after every epoch (into
            ``swap_epochs.csv``), not only after the last.
    """

    data: str = "mnist"
    levels: Sequence[int] = (0, 1, 2)
    seeds: int = 3
    epochs: int = 5
    subset: int | None = None
    test_subset: int | None = None
    batch_size: int = 200
    lr: float = 5e-4
    reps: int = 10
    gain: float | str = 1.0
    first_seed: int = 0
    test_every_epoch: bool = False

    def __post_init__(self) -> None:
        if self.data not in DATASETS:
            raise ValueError(f"swap study: data must be one of {', '.join(DATASETS)}, "
                             f"got {self.data!r}")
        self.levels = tuple(self.levels)
        if not self.levels or any(level not in SWAPPED for level in self.levels):
            raise ValueError(f"swap study: levels must be among 0, 1, 2, got {self.levels}")
        for key in ("seeds", "epochs", "batch_size", "reps"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"swap study: {key} must be an int >= 1, got {value!r}")
        if (isinstance(self.first_seed, bool) or not isinstance(self.first_seed, int)
                or self.first_seed < 0):
            raise ValueError(f"swap study: first_seed must be an int >= 0, "
                             f"got {self.first_seed!r}")
        for key in ("subset", "test_subset"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"swap study: {key} must be None or an int >= 1, "
                                 f"got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"swap study: lr must be a positive number, got {self.lr!r}")
        if self.gain != "uniform" and (isinstance(self.gain, bool)
                                       or not isinstance(self.gain, int | float)
                                       or not math.isfinite(self.gain) or self.gain <= 0):
            raise ValueError(f"swap study: gain must be a number > 0 or 'uniform', "
                             f"got {self.gain!r}")


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


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              batch: int = 500) -> float:
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            logits = model(x[start:start + batch])
            correct += int((logits.argmax(1) == y[start:start + batch]).sum())
    return correct / len(x)


def _swap_state(model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
                epoch: int, progress: dict[str, Any] | None,
                history: list[dict[str, Any]]) -> dict[str, Any]:
    from phys.runs import FORMAT, VERSION, rng_state

    return {"format": FORMAT, "version": VERSION, "kind": "swap", "model": model.state_dict(),
            "optimizer": opt.state_dict(), "generator": gen.get_state(), "epoch": epoch,
            "progress": progress, "history": list(history), "rng": rng_state()}


def train_level(level: int, seed: int, images: tuple[torch.Tensor, ...], config: SwapConfig,
                step: Callable[[dict[str, Any]], None] | None = None, *,
                run: Any = None, resume: bool = False, checkpoint_every: int | None = None,
                device: str | torch.device = "cpu"
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train one :class:`HybridNet` on the torch ``device``; returns its result row and one
    row per epoch.

    ``step`` is called after every optimiser step (for a progress bar). With ``run`` (a
    :class:`phys.runs.RunDir`) a checkpoint is saved after every epoch and every
    ``checkpoint_every`` steps; ``resume`` continues from the latest one.
    """
    from phys.runs import restore_rng

    x_tr, y_tr, x_te, y_te = (t.to(device) for t in images)
    torch.manual_seed(seed)
    model = HybridNet(level, reps=config.reps, gain=config.gain).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, Any]] = []
    first, progress = 1, None
    if resume:
        state, _ = run.load()
        model.load_state_dict(state["model"])  # onto the model's device
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        restore_rng(state["rng"])
        first, progress, history = int(state["epoch"]) + 1, state["progress"], state["history"]
        if step is not None:
            done = (first - 1) * math.ceil(len(x_tr) / config.batch_size)
            step({"level": level, "seed": seed, "epoch": first,
                  "steps": done + (progress["batches"] if progress else 0)})
    every = checkpoint_every or 0
    for epoch in range(first, config.epochs + 1):
        t0 = time.perf_counter()
        if progress is None:
            order = torch.randperm(len(x_tr), generator=gen)
            done, total_loss, correct = 0, 0.0, 0
        else:  # resumed within this epoch
            order, done = progress["order"], int(progress["batches"])
            total_loss, correct = float(progress["loss_sum"]), int(progress["correct"])
            t0 -= float(progress["seconds"])
            progress = None
        starts = range(0, len(x_tr), config.batch_size)
        for batch, start in enumerate(starts[done:], start=done + 1):
            idx = order[start:start + config.batch_size].to(device)
            logits = model(x_tr[idx])
            loss = F.cross_entropy(logits, y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            value = float(loss.detach())
            total_loss += value * len(idx)
            correct += int((logits.argmax(1) == y_tr[idx]).sum())
            if step is not None:
                step({"level": level, "seed": seed, "epoch": epoch, "loss": value})
            if run is not None and every and batch % every == 0 and batch < len(starts):
                run.save(_swap_state(model, opt, gen, epoch - 1, {
                    "order": order, "batches": batch, "loss_sum": total_loss,
                    "correct": correct, "seconds": time.perf_counter() - t0}, history))
        history.append({"level": level, "seed": seed, "epoch": epoch,
                        "train_loss": total_loss / len(x_tr),
                        "train_accuracy": correct / len(x_tr),
                        "seconds": time.perf_counter() - t0})
        if config.test_every_epoch:
            history[-1]["test_accuracy"] = _accuracy(model, x_te, y_te)
        if run is not None:
            run.save(_swap_state(model, opt, gen, epoch, None, history))
            run.write_metrics(history)
    last = history[-1].get("test_accuracy")
    row = {
        "data": config.data, "level": level, "swapped": SWAPPED[level], "seed": seed,
        "epochs": config.epochs, "train_images": len(x_tr), "test_images": len(x_te),
        "test_accuracy": _accuracy(model, x_te, y_te) if last is None else last,
        "train_accuracy": history[-1]["train_accuracy"],
        "train_loss": history[-1]["train_loss"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds_per_epoch": statistics.fmean(h["seconds"] for h in history),
    }
    return row, history


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


def _plot(summary: Sequence[dict[str, Any]], epochs: Sequence[dict[str, Any]], path: Path,
          title: str, data: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
    levels = [s["level"] for s in summary]
    ax_acc.errorbar(levels, [s["test_accuracy_mean"] for s in summary],
                    yerr=[s["test_accuracy_std"] for s in summary], marker="o", capsize=4,
                    label="this run")
    if data in PAPER:
        ax_acc.plot(levels, [PAPER[data][lv] for lv in levels], "s--", color="C2",
                    label="paper's code (50 epochs)")
    ax_acc.set(xlabel="replacement level", ylabel="test accuracy (%)", xticks=levels,
               title="test accuracy per level")
    low, high = ax_acc.get_ylim()
    if high - low < 2:  # show at least 2 points, so that results a hair apart look close
        middle = (low + high) / 2
        ax_acc.set_ylim(middle - 1, middle + 1)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    for i, level in enumerate(levels):
        rows = [e for e in epochs if e["level"] == level]
        xs = sorted({e["epoch"] for e in rows})
        mean = [statistics.fmean(e["train_loss"] for e in rows if e["epoch"] == x) for x in xs]
        ax_loss.plot(xs, mean, marker="o", ms=3, color=f"C{i}", label=f"level {level}")
    from matplotlib.ticker import MaxNLocator

    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set(xlabel="epoch", ylabel="train loss (mean over seeds)", title="training loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    fig.suptitle(title)
    atomic.write_figure(fig, path)


def run_study(config: SwapConfig, out: str | Path, *, progress: bool = False,
              resume: bool = False, overwrite: bool = False,
              checkpoint_every: int | None = 200, device: str | torch.device = "cpu"
              ) -> tuple[list[dict[str, Any]], str]:
    """Train every level and seed; write ``swap.csv`` (one row per run),
    ``swap_epochs.csv`` (one row per epoch), ``swap.png`` and ``results.json`` into ``out``.

    ``device`` is the torch device the models train on (``"cuda"`` for a GPU); it is not
    part of the configuration, so a study can resume on another device.

    Each run keeps a run directory ``out/runs/level{L}-seed{S}`` (see :mod:`phys.runs`)
    with a checkpoint after every epoch and every ``checkpoint_every`` steps; ``resume``
    skips the finished runs and continues the others from their checkpoints.

    Returns:
        The per-run rows and the summary table (Markdown).

    Raises:
        ValueError: ``resume`` of a study with another configuration (the message lists
            the differences), or an unfinished study in ``out`` without ``resume`` or
            ``overwrite``.
    """
    from tqdm.auto import tqdm

    from phys.report import metrics_csv
    from phys.runs import RunDir, jsonable

    if checkpoint_every is not None and (isinstance(checkpoint_every, bool)
                                         or not isinstance(checkpoint_every, int)
                                         or checkpoint_every < 0):
        raise ValueError(f"checkpoint_every must be an int >= 0 steps, got "
                         f"{checkpoint_every!r}")
    out = Path(out)
    top = RunDir(out)
    settings = jsonable(vars(config))
    runs = {(level, seed): RunDir(out / "runs" / f"level{level}-seed{seed}")
            for level in config.levels
            for seed in range(config.first_seed, config.first_seed + config.seeds)}
    saved = any(r.has_checkpoint() or r.finished() for r in runs.values())
    top.check("swap", settings, resume=resume, overwrite=overwrite, command="phys swap",
              saved=saved)
    images = load_images(config.data, subset=config.subset, test_subset=config.test_subset)
    top.start("swap", settings, fresh=not resume)
    steps = math.ceil(len(images[0]) / config.batch_size)
    total = len(runs) * config.epochs * steps
    rows, epochs = [], []
    with tqdm(total=total, disable=not progress, unit="step", dynamic_ncols=True) as bar:
        def step(info: dict[str, Any]) -> None:
            bar.set_description(f"level {info['level']} seed {info['seed']} "
                                f"epoch {info['epoch']}", refresh=False)
            if "loss" in info:
                bar.set_postfix(loss=f"{info['loss']:.3f}", refresh=False)
            bar.update(info.get("steps", 1))

        for (level, seed), run in runs.items():
            if resume and run.finished():
                done = json.loads(run.results.read_text())
                row, history = done["row"], done["history"]
                bar.update(config.epochs * steps)
            else:
                again = resume and run.has_checkpoint()
                if not again:
                    run.start("swap-run", {**settings, "level": level, "seed": seed},
                              fresh=True)
                row, history = train_level(level, seed, images, config, step, run=run,
                                           resume=again, checkpoint_every=checkpoint_every,
                                           device=device)
                atomic.write_json(run.results, {"row": row, "history": history})
            rows.append(row)
            epochs += history
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / CSV, metrics_csv(rows))
    atomic.write_text(out / EPOCHS_CSV, metrics_csv(epochs))
    summary = summarize(rows)
    title = (f"HybridNet on {config.data}: {config.epochs} epoch(s), {len(images[0])} train "
             f"images, {config.seeds} seed(s)")
    if 2 in config.levels and config.gain != 1:
        title += f", level-2 gain {config.gain}"

    _plot(summary, epochs, out / PLOT, title, config.data)
    atomic.write_json(top.results, {"rows": rows, "summary": summary})
    return rows, format_table(summary, config.data)
