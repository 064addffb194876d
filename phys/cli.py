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


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cavity",
                   help="registered device name or address, e.g. pennylane:default.qubit "
                        "(default: cavity)")
    p.add_argument("--data", default="digits",
                   help="dataset: digits (default, bundled), mnist, fashion_mnist, vowels")
    p.add_argument("--data-option", "-d", type=_parse_option, action="append", default=[],
                   metavar="KEY=VALUE", help="dataset option, e.g. -d classes=7 for vowels")
    p.add_argument("--layers", type=int, default=2, help="physical layers (default: 2)")
    p.add_argument("--hidden", type=int, default=256, help="width of each layer's output")
    p.add_argument("--measurements", type=int, default=64,
                   help="detectors n_out per device, when the device takes it")
    p.add_argument("--activation", choices=["relu", "abs"], default="relu",
                   help="nonlinearity after each layer's digital map")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    p.add_argument("--negatives", choices=["all", "random"], default="all",
                   help="phyll: every wrong label per sample, or one random wrong label")
    p.add_argument("--readout", choices=["goodness", "linear"], default="goodness")
    p.add_argument("--goodness", choices=["cosine", "meansquare"], default="cosine")
    p.add_argument("--loss", choices=["contrast", "softmax", "threshold"], default="contrast",
                   help="phyll: layer loss (softmax: cross-entropy over a sample's labels)")
    p.add_argument("--label-scale", type=float, default=3.0,
                   help="phyll: hot value of the one-hot label embedding")
    p.add_argument("--theta", type=float, default=8.0,
                   help="phyll: sharpness of the contrast loss")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="phyll: fraction of each layer's outputs dropped from its goodness "
                        "in training")
    p.add_argument("--twin", choices=["surrogate", "simulator"], default="surrogate",
                   help="pat: a network fitted to device queries, or the simulator with "
                        "--twin-option overrides")
    p.add_argument("--twin-samples", type=int, default=8192,
                   help="pat: device queries used to fit a surrogate twin")
    p.add_argument("--twin-option", "-t", type=_parse_option, action="append", default=[],
                   metavar="KEY=VALUE", help="pat: simulator twin option, e.g. -t drive=5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device-option", "-o", type=_parse_option, action="append",
                   default=[], metavar="KEY=VALUE",
                   help="extra device option, e.g. -o n_scatterers=128 -o noise=0.01")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _spec(args: argparse.Namespace, **overrides: Any) -> Any:
    from dataclasses import fields

    from phys.experiment import TrainSpec

    options = {"device_options": args.device_option, "twin_options": args.twin_option,
               "data_options": args.data_option}
    names = {f.name for f in fields(TrainSpec)} - set(options)
    values = {k: v for k, v in vars(args).items() if k in names}
    return TrainSpec(**{**values, **overrides}, **{k: dict(v) for k, v in options.items()})


def _build_parser() -> argparse.ArgumentParser:
    from phys import __version__

    parser = argparse.ArgumentParser(
        prog="phys",
        description="Train neural networks whose layers are physical systems.",
    )
    parser.add_argument("--version", action="version", version=f"physnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser(
        "train", help="train a physical network (PhyLL, backprop or physics-aware)",
        description="Train a physical network and write results.json, metrics.csv, "
                    "curve.png and checkpoint.pt to --out.",
    )
    _add_training_options(train)
    train.add_argument("--trainer", choices=["phyll", "backprop", "pat"], default="phyll",
                       help="phyll: model-free (default); backprop: in silico through the "
                            "simulator; pat: device forward, digital-twin backward")
    train.add_argument("--flops", dest="count_flops", action="store_true",
                       help="measure the digital FLOPs of training (slower)")
    train.add_argument("--out", default="runs/train", help="run directory (default: runs/train)")
    train.add_argument("--resume", metavar="DIR",
                       help="continue the run in DIR from its latest checkpoint (its options "
                            "are taken from DIR; options given must match them)")
    _add_run_options(train)
    train.add_argument("--device-wait", type=float, default=300.0, metavar="SECONDS",
                       help="how long to wait for a lab device that stops answering to come "
                            "back, after saving the run (default: 300)")

    compare = sub.add_parser(
        "compare", help="run several trainers on one device and dataset, tabulate and plot",
        description="Train each trainer with the same options; write compare.md (a table) "
                    "and compare.png (test accuracy against device queries and against "
                    "digital FLOPs), and each run's files under --out/TRAINER.",
    )
    _add_training_options(compare)
    compare.add_argument("--trainers", nargs="+", choices=["phyll", "backprop", "pat"],
                         default=["phyll", "backprop", "pat"])
    compare.add_argument("--out", default="runs/compare",
                         help="output directory (default: runs/compare)")

    devices = sub.add_parser("devices", help="list the registered devices and their info")
    devices.add_argument("--names", action="store_true", help="print names only")
    devices.add_argument("--scan", action="store_true",
                         help="probe serial ports for lab devices (HELLO) and list what answers")
    devices.add_argument("--ports", nargs="+", metavar="PORT",
                         help="with --scan: ports to probe (default: USB serial ports found)")
    devices.add_argument("--baudrate", type=int, default=115200, help="with --scan")
    _add_emulate_parser(sub)
    _add_swap_parser(sub)
    _add_sweep_parser(sub)
    return parser


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="start again in an output directory that holds an unfinished run")
    p.add_argument("--checkpoint-every", type=int, default=200, metavar="N",
                   help="also save a checkpoint every N batches within an epoch (0: at epoch "
                        "ends only; default: 200)")


def _add_sweep_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sweep", help="run a grid of phys train or phys swap runs as Ray tasks",
        description="Run every point of the grid in SWEEP.toml as a Ray task (the code of "
                    "phys train or phys swap, each point in its own run directory), on a "
                    "local Ray or the cluster at --address; write sweep.csv, sweep.md and "
                    "sweep.png. Finished points are skipped when the sweep runs again.",
    )
    p.add_argument("file", metavar="SWEEP.toml", help="the sweep: options and grid")
    p.add_argument("--address", help="Ray cluster address, e.g. ray://head:10001 or auto "
                                      "(default: start a local Ray)")
    p.add_argument("--num-cpus", type=int,
                   help="CPUs of the local Ray (default: all); ignored with --address")
    p.add_argument("--out", help="sweep directory (default: the file's [sweep] out, or "
                                 "runs/NAME for SWEEP.toml named NAME)")


def _add_swap_parser(sub: Any) -> None:
    p = sub.add_parser(
        "swap", help="swap classical layers for quantum ones level by level, train, compare",
        description="Train the 'Let the Quantum Creep In' model at each replacement level "
                    "(0: classical; 1: both convolutions quantum; 2: also the linear layer) "
                    "on 32x32 images; print a table and write swap.csv, swap_epochs.csv and "
                    "swap.png to --out.",
    )
    p.add_argument("--data", choices=["mnist", "fashion_mnist", "digits"], default="digits",
                   help="dataset (digits: 8x8, resized to 28x28 and padded to 32x32)")
    p.add_argument("--levels", type=int, nargs="+", choices=[0, 1, 2], default=[0, 1, 2])
    p.add_argument("--seeds", type=int, default=3, help="runs per level (default: 3)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--subset", type=int, help="train on this many training images")
    p.add_argument("--test-subset", type=int, help="test on this many test images")
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--reps", type=int, default=10,
                   help="repetitions of the quantum linear layer (default: 10)")
    p.add_argument("--gain", default="1",
                   help="factor on the quantum linear layer's probabilities at level 2: a "
                        "number or 'uniform' (2**qubits, 128 here, so the uniform state reads "
                        "1; learns far faster than the default 1)")
    p.add_argument("--test-every-epoch", action="store_true",
                   help="measure test accuracy after every epoch, not only the last")
    p.add_argument("--torch-device", default="cpu",
                   help="torch device to train on, e.g. cuda (default: cpu)")
    p.add_argument("--threads", type=int,
                   help="torch threads (default: torch's choice; on cores busy with other "
                        "work, 1 is often much faster)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seed of each level's first run (default: 0)")
    p.add_argument("--out", default="runs/swap", help="output directory (default: runs/swap)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the study in DIR: finished runs are kept, the others "
                        "continue from their checkpoints")
    _add_run_options(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_emulate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "emulate", help="serve a simulator as a virtual lab device on a pty or TCP port",
        description="Serve the serial wire protocol, backed by a simulator, on a new "
                    "pseudo-terminal (or a TCP port). Prints the port; then, from another "
                    "shell: phys train --device serial://PORT. Stops on Ctrl-C.",
    )
    p.add_argument("--device", default="cavity", help="simulator behind the protocol")
    p.add_argument("--device-option", "-o", type=_parse_option, action="append", default=[],
                   metavar="KEY=VALUE", help="simulator option, e.g. -o n_in=16 -o n_out=8")
    p.add_argument("--baud", type=int, default=115200, help="modelled line rate, bits/s")
    p.add_argument("--settle", type=float, default=0.0, help="modelled settle s per sample")
    p.add_argument("--conversion", type=float, default=0.0,
                   help="modelled conversion s per sample")
    p.add_argument("--turnaround", type=float, default=0.0,
                   help="modelled firmware s per request")
    p.add_argument("--realtime", action="store_true",
                   help="answer when a real rig would (default: at once, on virtual time)")
    p.add_argument("--faults", default="",
                   help="e.g. drop=0.01,corrupt=0.01,duplicate=0.01,delay=0.05,reset=0.001,"
                        "unplug=0.0001,delay_seconds=0.2")
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument("--dtype", choices=["f32", "i16"], default="f32", help="values on the wire")
    p.add_argument("--out-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="span of i16 outputs (needed with --dtype i16)")
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--max-frame", type=int, help="largest body, bytes (default: fits max-batch)")
    p.add_argument("--queue", type=int, default=4, help="frames the device input queue holds")
    p.add_argument("--tcp", type=int, metavar="PORT", help="serve on TCP (0: any free port)")
    p.add_argument("--port-file", help="also write the port to this file")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for the simulator (default: 1)")


def _given(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The destinations of the options written out in ``argv`` (not left to defaults)."""
    actions = parser._actions
    defaults = [a.default for a in actions]
    try:
        for action in actions:
            action.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(list(argv))))
    finally:
        for action, default in zip(actions, defaults, strict=True):
            action.default = default


#: Options that say how to run, not what: they may differ when a run is resumed.
RUN_OPTIONS = {"out", "resume", "overwrite", "checkpoint_every", "device_wait", "no_progress",
               "threads"}


def _resumed(args: argparse.Namespace, given: set[str], kind: str, cls: type,
             build: Any) -> Any:
    """The configuration saved in ``--resume DIR`` with the options given on the command
    line put over it (the run then refuses any that differ, listing them)."""
    from dataclasses import fields, replace

    from phys.runs import RunDir

    if "out" in given and args.out != args.resume:
        raise CLIError("give the run directory once: --resume DIR, without --out")
    saved = RunDir(args.resume).read_config()
    if saved is None:
        raise CLIError(f"--resume {args.resume}: no run there (no config.json)")
    if saved.get("kind") != kind:
        raise CLIError(f"--resume {args.resume}: that is a {saved.get('kind')!r} run, not a "
                       f"{kind!r} run")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(saved["config"]) - names)
    if unknown:
        raise CLIError(f"--resume {args.resume}: config.json has unknown options "
                       f"{', '.join(unknown)}")
    wanted = build(args)
    rename = {"device_option": "device_options", "twin_option": "twin_options",
              "data_option": "data_options"}
    chosen = {rename.get(d, d) for d in given - RUN_OPTIONS} & names
    return replace(cls(**saved["config"]), **{k: getattr(wanted, k) for k in chosen})


def _cmd_train(args: argparse.Namespace, given: set[str] = frozenset()) -> int:
    from phys.experiment import TrainSpec, run
    from phys.runs import DeviceLost

    out = args.out
    if args.resume is not None:
        spec, out = _resumed(args, given, "train", TrainSpec, _spec), args.resume
    else:
        spec = _spec(args)
    try:
        results = run(spec, out=out, progress=not args.no_progress,
                      resume=args.resume is not None, overwrite=args.overwrite,
                      checkpoint_every=args.checkpoint_every, device_wait=args.device_wait)
    except DeviceLost as err:
        print(f"phys: {err}", file=sys.stderr)
        return 3
    lab = results.get("lab_seconds")
    print(f"train accuracy {results['train_accuracy']:.4f}  "
          f"test accuracy {results['test_accuracy']:.4f}  "
          f"({results['epochs']} epochs, {results['seconds']:.1f} s)")
    print(f"device queries {results['device_queries']}  samples {results['device_samples']}"
          + (f"  estimated lab time {lab:.0f} s" if lab is not None else ""))
    if results.get("digital_flops") is not None:
        print(f"digital FLOPs of training {results['digital_flops']:.3g}")
    print(f"wrote {out}/results.json, metrics.csv, curve.png, checkpoint.pt")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from phys.compare import compare

    table = compare(_spec(args, count_flops=True), args.trainers, args.out,
                    progress=not args.no_progress)
    print(table, end="")
    print(f"wrote {args.out}/compare.md, compare.png and a run directory per trainer")
    return 0


def _cmd_emulate(args: argparse.Namespace) -> int:
    from phys.devices.emulator import serve

    serve(args.device, dict(args.device_option), tcp=args.tcp, port_file=args.port_file,
          duration=args.duration, threads=args.threads, baudrate=args.baud, settle=args.settle,
          conversion=args.conversion, turnaround=args.turnaround, realtime=args.realtime,
          faults=args.faults, fault_seed=args.fault_seed, dtype=args.dtype,
          out_range=args.out_range, max_batch=args.max_batch, max_frame=args.max_frame,
          queue=args.queue)
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from phys.devices.ports import scan

    found = scan(args.ports, baudrate=args.baudrate)
    if not found:
        print("no USB serial ports found")
    for port, result in found:
        if isinstance(result, str):
            print(f"{port}  no lab device: {result}")
        else:
            x = result.extra
            print(f"{port}  {result.name} (firmware {x.get('firmware')!r}) n_in={result.n_in} "
                  f"n_out={result.n_out} range=[{result.in_min:g}, {result.in_max:g}] "
                  f"{x.get('dtype')} max_batch={x.get('device_max_batch')}")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from phys import registry

    if args.scan:
        return _cmd_scan(args)
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


def _gain(text: str) -> float | str:
    if text == "uniform":
        return text
    try:
        return float(text)
    except ValueError:
        raise CLIError(f"--gain must be a number or 'uniform', got {text!r}") from None


def _swap_config(args: argparse.Namespace) -> Any:
    from phys.quantum.study import SwapConfig

    return SwapConfig(data=args.data, levels=args.levels, seeds=args.seeds,
                      epochs=args.epochs, subset=args.subset, test_subset=args.test_subset,
                      batch_size=args.batch_size, lr=args.lr, reps=args.reps,
                      gain=_gain(args.gain), first_seed=args.first_seed,
                      test_every_epoch=args.test_every_epoch)


def _torch_device(name: str) -> Any:
    import torch

    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        raise CLIError(f"--torch-device {name!r} cannot be used here: {err}") from None
    return device


def _cmd_swap(args: argparse.Namespace, given: set[str] = frozenset()) -> int:
    from phys.quantum.study import CSV, EPOCHS_CSV, PLOT, SwapConfig, run_study

    out = args.out
    if args.resume is not None:
        config, out = _resumed(args, given, "swap", SwapConfig, _swap_config), args.resume
    else:
        config = _swap_config(args)
    if args.threads is not None:
        if args.threads < 1:
            raise CLIError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    _, table = run_study(config, out, progress=not args.no_progress,
                         resume=args.resume is not None, overwrite=args.overwrite,
                         checkpoint_every=args.checkpoint_every,
                         device=_torch_device(args.torch_device))
    print(table, end="")
    print(f"wrote {out}/{CSV}, {EPOCHS_CSV}, {PLOT}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from phys.sweep import load_sweep, run_sweep

    sweep = load_sweep(args.file, out=args.out)
    outcome = run_sweep(sweep, address=args.address, num_cpus=args.num_cpus,
                        log=lambda text: print(text, flush=True))
    print(outcome.table, end="")
    print(f"{outcome.ran} run, {outcome.skipped} skipped (finished before), "
          f"{outcome.failed} failed; wrote {sweep.out}/sweep.csv, sweep.md, sweep.png")
    return 1 if outcome.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``phys`` console script; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handlers = {"train": _cmd_train, "compare": _cmd_compare, "devices": _cmd_devices,
                "emulate": _cmd_emulate, "swap": _cmd_swap, "sweep": _cmd_sweep}
    try:
        if args.command in ("train", "swap") and args.resume is not None:
            words = list(sys.argv[1:] if argv is None else argv)
            command = parser._subparsers._group_actions[0].choices[args.command]
            given = _given(command, words[words.index(args.command) + 1:])
            return handlers[args.command](args, given)
        return handlers[args.command](args)
    except (ValueError, TypeError, CLIError, FileNotFoundError, RuntimeError) as err:
        print(f"phys: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phys: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
