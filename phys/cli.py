"""The ``phys`` command line. Heavy libraries load only inside the subcommands.

The options of ``phys train`` and ``phys compare`` are generated from the options
dataclasses of :mod:`phys.experiment` (flag, type, allowed values, help and default come
from each field), so they are written once. Every option's parser default is ``None``:
what is not ``None`` after parsing is what the user typed, and the rest is left to the
dataclass's own default.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["main"]

#: Flags that are not ``--`` plus the option's name with ``-`` for ``_``.
FLAGS: dict[str, tuple[str, ...]] = {
    "count_flops": ("--count-flops", "--flops"),
    "device_options": ("--device-option", "-o"),
    "data_options": ("--data-option", "-d"),
    "twin_options": ("--twin-option", "-t"),
}


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that remembers the flag of every option added from a dataclass,
    to translate library messages (``epochs must be ...``) into flags (``--epochs``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flags: dict[str, str] = {}


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value  # a bare string
    return key, parsed


def _flags(name: str) -> tuple[str, ...]:
    return FLAGS.get(name, ("--" + name.replace("_", "-"),))


def _scalar(hint: Any) -> Any:
    """The one non-``None`` type of ``hint`` (``int | None`` -> ``int``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return hint


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value))
    return str(value)


def _default_text(f: dataclasses.Field) -> str:
    if f.default is dataclasses.MISSING:
        return ""
    return f" (default: {_shown(f.default)})".replace("%", "%%")


def _kind(hint: Any, meta: Any) -> dict[str, Any]:
    """``add_argument`` keywords for an option of type ``hint``."""
    hint = _scalar(hint)
    origin = typing.get_origin(hint) or hint
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is dict:
        return {"type": _parse_option, "action": "append", "metavar": "KEY=VALUE"}
    kind: dict[str, Any] = {}
    if origin in (tuple, list, Sequence):
        kind["nargs"] = "+"
        hint = (typing.get_args(hint) or (str,))[0]
    if hint in (int, float, str):
        kind["type"] = hint
    if meta.get("choices") is not None:
        kind["choices"] = meta["choices"]
    return kind


def add_options(parser: _Parser, cls: type, *, group: Any = None,
                skip: Sequence[str] = ()) -> None:
    """Add a flag to ``parser`` (in ``group``) for every field of options dataclass
    ``cls`` but ``skip``; the parser's default is ``None`` (see the module docstring)."""
    from phys.options import option_fields

    target = parser if group is None else group
    for f, hint in option_fields(cls):
        if f.name in skip:
            continue
        flags = _flags(f.name)
        target.add_argument(*flags, dest=f.name, default=None,
                            help=f.metadata["help"].replace("%", "%%") + _default_text(f),
                            **_kind(hint, f.metadata))
        parser.flags[f.name] = flags[0]


def given(args: argparse.Namespace, cls: type, skip: Sequence[str] = ()) -> dict[str, Any]:
    """The options of ``cls`` typed on the command line (``KEY=VALUE`` lists as dicts)."""
    typed = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None and f.name not in skip:
            typed[f.name] = dict(value) if f.default_factory is dict else value
    return typed


def _group_title(cls: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", cls.__name__).lower()


def _training_parser(prog: str, description: str, out: str, skip: Sequence[str]) -> _Parser:
    from phys.experiment import TrainSpec

    p = _Parser(prog=prog, description=description)
    for part in TrainSpec.PARTS:
        add_options(p, part, group=p.add_argument_group(_group_title(part)), skip=skip)
    p.add_argument("--out", help=f"run directory (default: {out})")
    return p


def _train_parser() -> _Parser:
    from phys.experiment import RunOptions

    p = _training_parser(
        "phys train", "Train a physical network and write results.json, metrics.csv, "
        "curve.png and checkpoint.pt to --out.", "runs/train", ())
    run = p.add_argument_group("run options")
    run.add_argument("--resume", metavar="DIR",
                     help="continue the run in DIR from its latest checkpoint (its options "
                          "are taken from DIR; options given must match them)")
    add_options(p, RunOptions, group=run)
    p.flags.update(out="--out", resume="--resume")
    return p


def _compare_parser() -> _Parser:
    from phys.experiment import TRAINERS, RunOptions

    p = _training_parser(
        "phys compare", "Train each trainer with the same options; write compare.md (a "
        "table) and compare.png (test accuracy against training device samples and against "
        "digital FLOPs), and each run's files under --out/TRAINER.", "runs/compare",
        ("trainer", "count_flops"))
    p.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS),
                   help=f"trainers to compare (default: {' '.join(TRAINERS)})")
    add_options(p, RunOptions, skip=("checkpoint_every", "device_wait", "overwrite",
                                      "record"))
    return p


def _swap_parser() -> _Parser:
    """``phys swap``: its study options are the fields of
    :class:`~phys.quantum.study.SwapConfig`."""
    from phys.experiment import RunOptions
    from phys.quantum.study import SwapConfig

    p = _Parser(
        prog="phys swap",
        description="Train the 'Let the Quantum Creep In' model at each replacement level "
                    "(0: classical; 1: both convolutions quantum; 2: also the linear layer) "
                    "on 32x32 images; print a table and write swap.csv, swap_epochs.csv and "
                    "swap.png to --out.")
    add_options(p, SwapConfig, group=p.add_argument_group("study options"))
    p.add_argument("--out", help="output directory (default: runs/swap)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the study in DIR: finished runs are kept, the others "
                        "continue from their checkpoints")
    add_options(p, RunOptions, skip=("device_wait", "tensorboard", "record"))
    p.flags.update(out="--out", resume="--resume")
    return p


def _gain(text: str) -> float | str:
    if text == "uniform":
        return text
    try:
        return float(text)
    except ValueError:
        raise CLIError(f"--gain must be a number or 'uniform', got {text!r}") from None


def _sweep_parser() -> _Parser:
    p = _Parser(
        prog="phys sweep",
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
    p.add_argument("--yes", action="store_true", help="run a grid of more points than "
                   "its [sweep] max_points (default: 1000) without asking")
    return p


def _devices_parser() -> _Parser:
    p = _Parser(prog="phys devices", description="List the registered devices and their info.")
    p.add_argument("--names", action="store_true", help="print names only")
    p.add_argument("--scan", action="store_true",
                   help="probe serial ports for lab devices (HELLO) and list what answers")
    p.add_argument("--ports", nargs="+", metavar="PORT",
                   help="with --scan: ports to probe (default: USB serial ports found)")
    p.add_argument("--baudrate", type=int, default=115200, help="with --scan")
    return p


def _eval_parser() -> _Parser:
    p = _Parser(prog="phys eval", description="Open a finished phys train run with its devices "
                "and measure its test accuracy again; write eval.json to the run directory.")
    p.add_argument("run", metavar="DIR", help="the run directory")
    p.add_argument("--data", help="test on this dataset instead of the run's own")
    p.add_argument("--data-option", "-d", type=_parse_option, action="append", default=[],
                   metavar="KEY=VALUE", help="option of --data, e.g. -d classes=7")
    _add_threads(p)
    return p


def _cmd_eval(args: argparse.Namespace) -> int:
    from phys.load import evaluate_run

    _use_threads(args.threads)
    result = evaluate_run(args.run, args.data, dict(args.data_option) or None)
    print(f"test accuracy {result['test_accuracy']:.4f} on {result['data']} "
          f"({result['test_samples']} samples, device queries {result['device_queries']}, "
          f"samples {result['device_samples']})")
    print(f"wrote {result['file']}")
    return 0


def _predict_parser() -> _Parser:
    p = _Parser(prog="phys predict", description="Predict labels with a finished phys train "
                "run for the rows of a .npy file of features (B, n_features).")
    p.add_argument("run", metavar="DIR", help="the run directory")
    p.add_argument("--input", required=True, metavar="FILE.npy", help="features, one row each")
    p.add_argument("--out", metavar="FILE.npy", help="where to write the int64 labels "
                   "(default: DIR/predictions.npy)")
    _add_threads(p)
    return p


def _cmd_predict(args: argparse.Namespace) -> int:
    from phys.load import predict_file

    _use_threads(args.threads)
    print(f"wrote {predict_file(args.run, args.input, args.out)}")
    return 0


def _emulate_parser() -> _Parser:
    """``phys emulate``: its options are the fields of
    :class:`~phys.devices.emulate.EmulateOptions`."""
    from phys.devices.emulate import EmulateOptions

    p = _Parser(
        prog="phys emulate",
        description="Serve the serial wire protocol, backed by a simulator, on a new "
                    "pseudo-terminal (or a TCP port of 127.0.0.1). Prints the port; then, "
                    "from another shell: phys train --device serial://PORT. On TCP one host "
                    "is served at a time (--clients N: N, each with a device of its own); "
                    "another host's first request is answered ERROR 8 'in use' and it is "
                    "disconnected. Stops on Ctrl-C or SIGTERM and prints a summary.",
    )
    add_options(p, EmulateOptions)
    return p


# -- the commands -------------------------------------------------------------------------

def _resumed(resume: str, out: str | None, kind: str, cls: type,
             typed: dict[str, Any]) -> Any:
    """The configuration saved in run directory ``resume`` with the options ``typed`` on
    the command line put over it (the run then refuses any that differ, listing them)."""
    from phys.runs import RunDir

    if out is not None and out != resume:
        raise CLIError("give the run directory once: --resume DIR, without --out")
    saved = RunDir(resume).read_config()
    if saved is None:
        raise CLIError(f"--resume {resume}: no run there (no config.json)")
    if saved.get("kind") != kind:
        raise CLIError(f"--resume {resume}: that is a {saved.get('kind')!r} run, not a "
                       f"{kind!r} run")
    unknown = sorted(set(saved["config"]) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise CLIError(f"--resume {resume}: config.json has unknown options "
                       f"{', '.join(unknown)}")
    return cls(**{**saved["config"], **typed})


def _cmd_train(args: argparse.Namespace) -> int:
    from phys.experiment import RunOptions, TrainSpec
    from phys.runs import DeviceLost, train

    typed = given(args, TrainSpec)
    run_options = RunOptions(**given(args, RunOptions))
    spec, out, resume = _train_target(args, typed, run_options.overwrite)
    options = {**vars(run_options), "threads": _use_threads(run_options.threads)}
    try:
        results = train(spec, out=out, resume=resume, **options)
    except DeviceLost as err:
        print(f"phys: {err}", file=sys.stderr)
        return 3
    _print_results(results, out)
    return 0


def _train_target(args: argparse.Namespace, typed: dict[str, Any], overwrite: bool
                  ) -> tuple[Any, str, bool]:
    """``(spec, run directory, resume)`` of ``phys train``: a new run, or the run given to
    ``--resume`` (a finished one only with ``--overwrite``, which trains it again)."""
    from phys.experiment import TrainSpec
    from phys.runs import RunDir
    from phys.runs.layout import jsonable
    from phys.runs.lock import check_out

    if args.resume is None:
        return TrainSpec(**typed), "runs/train" if args.out is None else args.out, False
    check_out(args.resume, "resume")
    spec = _resumed(args.resume, args.out, "train", TrainSpec, typed)
    run = RunDir(args.resume)
    if not run.finished():
        return spec, args.resume, True
    run.check("train", jsonable(vars(spec)), resume=True)  # another configuration: say so
    if not overwrite:
        raise CLIError(f"--resume {args.resume}: the run is finished ({spec.epochs} epochs); "
                       f"nothing to resume (to train it again: phys train --resume "
                       f"{args.resume} --overwrite)")
    return spec, args.resume, False


def _print_results(results: dict[str, Any], out: str) -> None:
    lab = results.get("lab_seconds")
    print(f"train accuracy {results['train_accuracy']:.4f}  "
          f"test accuracy {results['test_accuracy']:.4f}  "
          f"({results['epochs']} epochs, {results['seconds']:.1f} s)")
    print(f"device queries {results['device_queries']}  samples {results['device_samples']}"
          + (f"  estimated lab time {lab:.0f} s" if lab is not None else ""))
    for link in results.get("link") or ():
        print(f"link {link['device']}: {link['requests']} requests, {link['resends']} "
              f"resends, {link['timeouts']} timeouts, {link['bad_frames']} bad frames, "
              f"{link['stale']} stale, {link['busy']} busy, {link['reboots']} reboots, "
              f"{link['reopens']} reopens")
    if results.get("digital_flops") is not None:
        print(f"digital FLOPs of training {results['digital_flops']:.3g}")
    print(f"wrote {out}/results.json, metrics.csv, curve.png, checkpoint.pt")


def _cmd_compare(args: argparse.Namespace) -> int:
    from phys.compare import compare
    from phys.experiment import RunOptions, TrainSpec

    out = args.out or "runs/compare"
    run_options = RunOptions(**given(args, RunOptions))
    table = compare(TrainSpec(**given(args, TrainSpec), count_flops=True), args.trainers,
                    out, progress=run_options.progress,
                    threads=_use_threads(run_options.threads),
                    torch_device=run_options.torch_device,
                    tensorboard=run_options.tensorboard)
    print(table, end="")
    print(f"wrote {out}/compare.md, compare.png and a run directory per trainer")
    return 0


def _cmd_emulate(args: argparse.Namespace) -> int:
    from phys.devices.emulate import EmulateOptions, serve

    serve(EmulateOptions(**given(args, EmulateOptions)))
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
            units = i.extra.get("units")
            desc += f"\n{'':12s} units: {units}" if units else ""
        except Exception as err:  # a device that cannot open with defaults still lists
            desc = f"(cannot open with default options: {err})"
        print(f"{name:12s} {target}\n{'':12s} {desc}")
    if not args.names:
        print("\naddresses (--device ADDRESS):")
        for scheme, opener in registry.OPENERS.items():
            print(f"  {scheme:10s} {', '.join(opener.forms)}")
    return 0


def _use_threads(threads: int | None) -> int:
    """Set torch's threads: ``threads``, or by default the cores available to the
    process (:mod:`phys.threads`)."""
    from phys.threads import set_threads

    return set_threads(threads)


def _add_threads(parser: _Parser) -> None:
    """``--threads``, for commands that compute but take no :class:`RunOptions`."""
    from phys.experiment import RunOptions

    add_options(parser, RunOptions, skip=tuple(
        f.name for f in dataclasses.fields(RunOptions) if f.name != "threads"))


def _cmd_swap(args: argparse.Namespace) -> int:
    from phys.device import as_torch_device
    from phys.experiment import RunOptions
    from phys.quantum.study import SwapConfig
    from phys.runs.lock import check_out
    from phys.runs.swap import CSV, EPOCHS_CSV, PLOT, run_study

    typed = given(args, SwapConfig)
    if "gain" in typed:
        typed["gain"] = _gain(typed["gain"])
    if args.resume is not None:
        check_out(args.resume, "resume")
        config, out = _resumed(args.resume, args.out, "swap", SwapConfig, typed), args.resume
    else:
        config, out = SwapConfig(**typed), "runs/swap" if args.out is None else args.out
    run_options = RunOptions(**given(args, RunOptions, skip=("tensorboard", "record")))
    _use_threads(run_options.threads)
    _, table = run_study(config, out, progress=run_options.progress,
                         resume=args.resume is not None, overwrite=run_options.overwrite,
                         checkpoint_every=run_options.checkpoint_every,
                         device=as_torch_device(run_options.torch_device))
    print(table, end="")
    print(f"wrote {out}/{CSV}, {EPOCHS_CSV}, {PLOT}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from phys.sweep import load_sweep, run_sweep

    if args.num_cpus is not None and args.num_cpus < 1:
        raise CLIError(f"--num-cpus must be >= 1, got {args.num_cpus}")
    sweep = load_sweep(args.file, out=args.out, yes=args.yes)
    outcome = run_sweep(sweep, address=args.address, num_cpus=args.num_cpus,
                        log=lambda text: print(text, flush=True))
    print(outcome.table, end="")
    print(f"{outcome.ran} run, {outcome.skipped} skipped (finished before), "
          f"{outcome.failed} failed; wrote {sweep.out}/sweep.csv, sweep.md, sweep.png")
    return 1 if outcome.failed else 0


@dataclass(frozen=True)
class Command:
    """A subcommand: one line of help, its parser (built only when it runs) and what it
    does with the parsed arguments (returns the exit status)."""

    help: str
    parser: Callable[[], _Parser]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "train": Command("train a physical network (PhyLL, backprop or physics-aware)",
                     _train_parser, _cmd_train),
    "compare": Command("run several trainers on one device and dataset, tabulate and plot",
                       _compare_parser, _cmd_compare),
    "devices": Command("list the registered devices and their info", _devices_parser,
                       _cmd_devices),
    "eval": Command("measure a finished run's test accuracy again on its devices",
                    _eval_parser, _cmd_eval),
    "predict": Command("predict labels with a finished run for features in a .npy file",
                       _predict_parser, _cmd_predict),
    "emulate": Command("serve a simulator as a virtual lab device on a pty or TCP port",
                       _emulate_parser, _cmd_emulate),
    "swap": Command("swap classical layers for quantum ones level by level, train, compare",
                    _swap_parser, _cmd_swap),
    "sweep": Command("run a grid of phys train or phys swap runs as Ray tasks",
                     _sweep_parser, _cmd_sweep),
    "twin": Command("fit PAT's digital twins to a recording (phys twin fit)",
                    lambda: _twin().parser(), lambda args: _twin().run(args)),
}


def _twin() -> Any:
    import phys.cli_twin

    return phys.cli_twin


def _top_parser() -> argparse.ArgumentParser:
    from phys import __version__

    listing = "\n".join(f"  {name:10s} {c.help}" for name, c in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="phys", description="Train neural networks whose layers are physical systems.",
        epilog=f"commands:\n{listing}\n\nphys COMMAND --help shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"physnn {__version__}")
    parser.add_argument("command", nargs="?", choices=COMMANDS, metavar="COMMAND",
                        help="one of the commands below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


#: Arguments that library messages name, as the command line spells them.
KEYWORDS = {"resume=True": "--resume DIR", "overwrite=True": "--overwrite",
            "yes=True": "--yes"}


def translate(message: str, flags: dict[str, str]) -> str:
    """A library message that starts with an argument's name (``epochs must be >= 1``,
    ``twin='simulator' needs ...``) with that argument's flag instead, and the run
    arguments it names (``resume=True``) as flags."""
    for keyword, flag in KEYWORDS.items():
        message = message.replace(keyword, flag)
    match = re.match(r"(\w+)(?= must\b| needs\b|=| ')", message)
    if match and match.group(1) in flags:
        return flags[match.group(1)] + message[match.end():]
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``phys`` console script; returns the exit status."""
    from phys import console
    from phys.threads import limit_spinning

    limit_spinning()  # before torch loads: OpenMP reads it once
    console.configure()
    top = _top_parser()
    request = top.parse_args(sys.argv[1:] if argv is None else list(argv))
    if request.command is None:
        top.print_help()
        return 0
    command = COMMANDS[request.command]
    parser = command.parser()
    args = parser.parse_args(request.args)
    try:
        return command.run(args)
    except (ValueError, TypeError, CLIError, FileNotFoundError, RuntimeError) as err:
        print(f"phys: error: {translate(str(err), parser.flags)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phys: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
