"""``phys twin fit``: fit PAT's digital twins to a recording and write them to a file.

``phys twin fit RECORDING --out twin.pt`` fits one surrogate twin per recorded device
(device ``k`` is layer ``k`` of the run that recorded it) as ``recorded:`` fits them, and
prints per device the rows used, the held-out relative RMSE and the seconds;
``phys train --trainer pat --twin twin.pt`` then trains without spending device queries
on twin fitting (:mod:`phys.train.twin_file`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from phys.cli import CLIError, _Parser, add_options, given

__all__ = ["parser", "run"]

ACTIONS = ("fit",)


def parser() -> _Parser:
    """The parser of ``phys twin``; its fit options are the fields of
    :class:`~phys.devices.recorded.FitOptions`."""
    from phys.devices.recorded import FitOptions

    p = _Parser(prog="phys twin", description="fit: fit one digital twin (a surrogate "
                "network) per device of a recording - a run's measurements.h5 or run "
                "directory, X.csv,Y.csv or X.npy,Y.npy, a folder of x_data/y_data, or "
                "phyll_acoustic - and write them to --out, for phys train --trainer pat "
                "--twin FILE.pt (no device queries spent on fitting twins).")
    p.add_argument("action", choices=ACTIONS, help="what to do: fit")
    p.add_argument("recording", metavar="RECORDING", help="what recorded:RECORDING opens")
    p.add_argument("--out", required=True, metavar="FILE.pt", help="the twin file to write")
    p.add_argument("--device", type=int, metavar="K", help="fit only device K of the "
                   "recording (default: every device; device K is layer K+1 of its run)")
    p.add_argument("--in-min", type=float, help="the devices' smallest input (default: "
                   "the recorded device's; of input files, the smallest recorded input)")
    p.add_argument("--in-max", type=float, help="the devices' largest input (default: as "
                   "--in-min)")
    add_options(p, FitOptions, group=p.add_argument_group("fit options"))
    p.flags.update(out="--out", device="--device", in_min="--in-min", in_max="--in-max")
    return p


def _check_out(out: str) -> Path:
    """The twin file to write, refused before any work: a name not ending in ``.pt``, a
    folder that does not exist."""
    from phys.train.twin_file import SUFFIX, is_twin_file

    path = Path(out).expanduser()
    if not is_twin_file(out):
        raise CLIError(f"--out must name a twin file ending in {SUFFIX}, got {out!r}")
    if path.is_dir() or not path.parent.is_dir():
        raise CLIError(f"--out {out}: " + ("a folder, not a file" if path.is_dir() else
                                           f"no folder {path.parent}"))
    return path


def _said(twin: Any) -> str:
    report = twin.report
    rows = f"{report['rows_used']:,} of {report['rows_available']:,} rows"
    dropped = f" ({report['dropped']} dropped: NaN or Inf)" if report.get("dropped") else ""
    return (f"device {twin.device}: {rows}{dropped}, held-out relative RMSE "
            f"{report['rel_rmse']:.4f}, {report['seconds']:.1f} s")


def run(args: argparse.Namespace) -> int:
    """``phys twin fit``: fit, print a line per device, write the file."""
    from phys.devices.recorded import FitOptions
    from phys.devices.recorded_io import files_sha256, recording_files
    from phys.train.twin_file import fit_twins, save_twins

    out = _check_out(args.out)
    options = FitOptions(**given(args, FitOptions))
    for flag, value in (("--in-min", args.in_min), ("--in-max", args.in_max)):
        if value is not None and not math.isfinite(value):
            raise CLIError(f"{flag} must be a finite number, got {value!r}")
    twins = fit_twins(args.recording, devices=None if args.device is None else [args.device],
                      options=options, in_min=args.in_min, in_max=args.in_max,
                      on_fit=lambda twin: print(_said(twin), flush=True))
    _, files, _ = recording_files(args.recording)
    digest = save_twins(out, twins, args.recording, files_sha256(files))
    print(f"wrote {out} ({len(twins)} twin(s), sha256 {digest[:16]}...)")
    return 0
