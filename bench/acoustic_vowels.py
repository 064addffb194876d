"""PhyLL on 7 vowels through the published recordings of an experimental acoustic cavity.

Momeni et al. (Science 382:1297, 2023) published 10,000 random inputs of their acoustic
chaotic cavity and the 20 values measured for each (``$PHYS_DATA/phyll_acoustic``). Both
physical layers open ``phys.open("recorded:FOLDER")``, a deterministic device fitted to
those recordings; the task is the 7 vowels of women's voices of Hillenbrand et al. (12
formant features). Prints mean and standard deviation of test accuracy over ``--splits``
seeded stratified 80/20 splits, device queries per training sample next to the authors'
count, and the ratio to the authors' own result on the same recordings and task
(0.9635 +- 0.032 over 10 splits). Never asserts.

``--stand-in`` replaces the recorded device by a small MLP fitted here to the same CSV
files (a temporary stand-in while ``recorded:`` is not available, not the method).

    .venv/bin/python bench/acoustic_vowels.py [--splits 10] [--epochs 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import ast
import statistics
import time
from pathlib import Path
from typing import Any

from _common import machine, use_shared_data

TARGET_MEAN, TARGET_SD = 0.9635, 0.032
#: The authors' queries per training sample: positive and negative through each of the 2
#: layers once per epoch (their 10 inner Adam steps reuse the measurements), 200 epochs.
#: Their per-epoch accuracy on the training set adds 7 labels x 2 layers per sample and epoch.
AUTHORS_TRAINING_QUERIES = 4 * 200
AUTHORS_MONITOR_QUERIES = 14 * 200

#: Settings of the network and of :class:`~phys.train.phyll.PhyLLConfig` (``--set``).
SETTINGS: dict[str, Any] = {
    "hidden": 64, "activation": "abs", "gain": 1.0,
    "epochs": 200, "batch_size": 16, "lr": 5e-3, "negatives": "random", "loss": "contrast",
    "theta": 4.0, "label_scale": 1.0, "goodness": "cosine", "schedule": "cosine",
}
_NETWORK = ("hidden", "activation", "gain")


def open_cavity(folder: Path, stand_in: Any, options: dict[str, Any]) -> Any:
    """One acoustic-cavity device: ``recorded:FOLDER`` opened with ``options``, or the
    stand-in's model."""
    import phys

    if stand_in is None:
        return phys.open("recorded:" + str(folder), **options)
    return _stand_in_device(stand_in)


def _fit_stand_in(folder: Path, epochs: int, seed: int = 0) -> tuple[Any, float]:
    """A 20-100-200-100-20 SiLU MLP fitted to rows 1-9,000; returns it and its RMSE on
    rows 9,301-10,000 (the authors' split)."""
    import numpy as np
    import torch
    from torch import nn

    x = np.loadtxt(folder / "x_data.csv", delimiter=",", skiprows=1, dtype=np.float32)
    y = np.loadtxt(folder / "y_data.csv", delimiter=",", skiprows=1, dtype=np.float32)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 100), nn.SiLU(), nn.Linear(100, 200), nn.SiLU(),
                          nn.Linear(200, 100), nn.SiLU(), nn.Linear(100, 20))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(9000, generator=gen).split(128):
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval().requires_grad_(False)
    rmse = float(nn.functional.mse_loss(model(x[9300:]), y[9300:]).sqrt())
    return model, rmse


def _stand_in_class() -> type:
    from phys.device import Device, DeviceInfo

    class StandIn(Device):
        """The stand-in MLP as a deterministic device on ``[0, 1]^20``."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model
            self.info = DeviceInfo(name="acoustic stand-in", n_in=20, n_out=20, in_min=0.0,
                                   in_max=1.0, max_batch=1 << 20)

        def _query(self, x: Any) -> Any:
            return self.model(x.float())

    return StandIn


def _stand_in_device(model: Any) -> Any:
    """The stand-in device around ``model`` (its class made on first use, after the
    data folder is set)."""
    return _stand_in_class()(model)


def run_split(split: int, settings: dict[str, Any], folder: Path, stand_in: Any,
              options: dict[str, Any]) -> tuple[float, float]:
    """Train on one seeded split; returns test accuracy and device samples per training
    sample spent by training."""
    import phys
    from phys.data import load
    from phys.train.phyll import PhyLLConfig, PhyLLNetwork, PhyLLTrainer

    data = load("vowels", classes=7, talkers="w", test_fraction=0.2, seed=split)
    if data.n_features != 12:
        raise RuntimeError(f"vowels: expected 12 formant features, got {data.n_features}")
    net_opts = {k: settings[k] for k in _NETWORK}
    cfg = {k: v for k, v in settings.items() if k not in _NETWORK}
    devices = [open_cavity(folder, stand_in, options) for _ in range(2)]
    widths = [data.n_features + data.n_classes, net_opts["hidden"], net_opts["hidden"]]
    blocks = [phys.PhysicalLayer(dev, widths[i], widths[i + 1],
                                 activation=net_opts["activation"], gain=net_opts["gain"],
                                 seed=100 * split + i)
              for i, dev in enumerate(devices)]
    network = PhyLLNetwork(blocks, n_classes=data.n_classes, seed=split)
    # accuracies only after the last epoch, the training one on a single sample, so
    # that the counted queries are those of training
    config = PhyLLConfig(**cfg, seed=split, eval_every=cfg["epochs"], train_eval_samples=1)
    trainer = PhyLLTrainer(network, config)
    trainer.fit(data.x_train, data.y_train, progress=None)
    spent = sum(d.stats.samples for d in devices) - 2 * data.n_classes
    accuracy = trainer.evaluate(data.x_test, data.y_test)
    for dev in devices:
        dev.close()
    return accuracy, spent / len(data.y_train)


def _pairs(parser: argparse.ArgumentParser, flag: str, items: list[str],
           known: dict[str, Any] | None) -> dict[str, Any]:
    """``KEY=VALUE`` items as a dict, values read as Python literals where they parse."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or (known is not None and key not in known):
            allowed = f" with KEY one of {sorted(known)}" if known is not None else ""
            parser.error(f"{flag} {item!r}: expected KEY=VALUE{allowed}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=10, help="seeded 80/20 splits (10)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs per split (default {SETTINGS['epochs']})")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help=f"override a setting of {sorted(SETTINGS)}, e.g. --set lr=1e-2")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of x_data.csv and y_data.csv "
                             "(default $PHYS_DATA/phyll_acoustic)")
    parser.add_argument("--stand-in", action="store_true",
                        help="an MLP fitted here to the CSV files instead of recorded:")
    parser.add_argument("--stand-in-epochs", type=int, default=60,
                        help="epochs of the stand-in's fit (60)")
    parser.add_argument("--device-option", nargs="*", default=[], metavar="KEY=VALUE",
                        help="keyword options of phys.open('recorded:...'), e.g. cache=False")
    args = parser.parse_args(argv)
    if args.splits < 1 or args.threads < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--splits, --epochs and --threads must be positive")
    args.settings = {**SETTINGS, **_pairs(parser, "--set", args.set, SETTINGS)}
    args.options = _pairs(parser, "--device-option", args.device_option, None)
    if args.epochs is not None:
        args.settings["epochs"] = args.epochs
    return args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    folder = args.data or use_shared_data() / "phyll_acoustic"
    import torch

    torch.set_num_threads(args.threads)
    print(machine(), flush=True)
    stand_in = None
    if args.stand_in:
        t0 = time.perf_counter()
        stand_in, rmse = _fit_stand_in(folder, args.stand_in_epochs)
        print(f"stand-in MLP fitted in {time.perf_counter() - t0:.0f} s: test RMSE {rmse:.4f} "
              f"on rows 9,301-10,000 (a temporary stand-in for recorded:)", flush=True)
    else:
        t0 = time.perf_counter()
        with open_cavity(folder, None, args.options) as device:
            extra = dict(device.info.extra)
        print(f"recorded:{folder.name} opened in {time.perf_counter() - t0:.1f} s, fit's "
              f"held-out relative RMSE {extra.get('rel_rmse')}", flush=True)
    accuracies, per_sample = [], []
    t0 = time.perf_counter()
    for split in range(args.splits):
        acc, queries = run_split(split, args.settings, folder, stand_in, args.options)
        accuracies.append(acc)
        per_sample.append(queries)
        print(f"split {split}: test accuracy {acc:.4f}, {queries:.0f} device queries per "
              f"training sample, {time.perf_counter() - t0:.0f} s so far", flush=True)
    mean = statistics.fmean(accuracies)
    sd = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    queries = statistics.fmean(per_sample)
    print(f"test accuracy {mean:.4f} +- {sd:.4f} over {args.splits} splits "
          f"(target {TARGET_MEAN} +- {TARGET_SD}); ratio to target {mean / TARGET_MEAN:.3f}; "
          f"device queries per training sample {queries:.0f} (authors: "
          f"{AUTHORS_TRAINING_QUERIES} in training, {AUTHORS_MONITOR_QUERIES} more for their "
          f"per-epoch training accuracy); device "
          f"{'stand-in MLP' if args.stand_in else 'recorded:' + folder.name}; "
          f"settings {args.settings}", flush=True)
    return {"mean": mean, "sd": sd, "queries_per_sample": queries}


if __name__ == "__main__":
    main()
