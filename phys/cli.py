"""The ``phys`` command line. Heavy libraries load only inside the subcommands."""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value  # a bare string
    return key, parsed


def _build_parser() -> argparse.ArgumentParser:
    from phys import __version__

    parser = argparse.ArgumentParser(
        prog="phys",
        description="Train neural networks whose layers are physical systems.",
    )
    parser.add_argument("--version", action="version", version=f"physnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser(
        "train", help="train a physical network with PhyLL (model-free forward-forward)",
        description="Train a physical network with physical local learning (PhyLL) and "
                    "write results.json, metrics.csv, curve.png and checkpoint.pt to --out.",
    )
    train.add_argument("--device", default="cavity",
                       help="registered device name (default: cavity)")
    train.add_argument("--data", default="digits", help="dataset name (default: digits)")
    train.add_argument("--layers", type=int, default=2, help="physical layers (default: 2)")
    train.add_argument("--hidden", type=int, default=256, help="width of each layer's output")
    train.add_argument("--measurements", type=int, default=64,
                       help="detectors n_out per device, when the device takes it")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--negatives", choices=["all", "random"], default="all",
                       help="every wrong label per sample, or one random wrong label")
    train.add_argument("--readout", choices=["goodness", "linear"], default="goodness")
    train.add_argument("--goodness", choices=["cosine", "meansquare"], default="cosine")
    train.add_argument("--loss", choices=["contrast", "threshold"], default="contrast")
    train.add_argument("--label-scale", type=float, default=3.0,
                       help="hot value of the one-hot label embedding")
    train.add_argument("--theta", type=float, default=8.0,
                       help="sharpness of the contrast loss")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device-option", "-o", type=_parse_option, action="append",
                       default=[], metavar="KEY=VALUE",
                       help="extra device option, e.g. -o n_scatterers=128 -o noise=0.01")
    train.add_argument("--out", default="runs/train", help="run directory (default: runs/train)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    devices = sub.add_parser("devices", help="list the registered devices and their info")
    devices.add_argument("--names", action="store_true", help="print names only")
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from phys.experiment import TrainSpec, run

    names = {f.name for f in fields(TrainSpec)} - {"device_options"}
    spec = TrainSpec(**{k: v for k, v in vars(args).items() if k in names},
                     device_options=dict(args.device_option))
    results = run(spec, out=args.out, progress=not args.no_progress)
    lab = results.get("lab_seconds")
    print(f"train accuracy {results['train_accuracy']:.4f}  "
          f"test accuracy {results['test_accuracy']:.4f}  "
          f"({results['epochs']} epochs, {results['seconds']:.1f} s)")
    print(f"device queries {results['device_queries']}  samples {results['device_samples']}"
          + (f"  estimated lab time {lab:.0f} s" if lab is not None else ""))
    print(f"wrote {args.out}/results.json, metrics.csv, curve.png, checkpoint.pt")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from phys import registry

    for name, target in registry.available().items():
        if args.names:
            print(name)
            continue
        try:
            with registry.open(name) as dev:
                i = dev.info
                desc = (f"n_in={i.n_in} n_out={i.n_out} range=[{i.in_min:g}, {i.in_max:g}] "
                        f"max_batch={i.max_batch} differentiable={i.differentiable} "
                        f"stochastic={i.stochastic}")
        except Exception as err:  # a device that cannot open with defaults still lists
            desc = f"(cannot open with default options: {err})"
        print(f"{name:12s} {target}\n{'':12s} {desc}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``phys`` console script; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handlers = {"train": _cmd_train, "devices": _cmd_devices}
    try:
        return handlers[args.command](args)
    except (ValueError, CLIError, FileNotFoundError, RuntimeError) as err:
        print(f"phys: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phys: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
