"""Run every benchmark in bench/ one after another (`make bench`).

Every `*.py` here except this file and the `_` helpers is a benchmark, run with its
defaults (`busy_demo.py` and `tensorboard_overhead.py` included: they need `phys train`'s
`--threads` and `--no-tensorboard`). `--list` prints their names and runs nothing.

    .venv/bin/python bench/run_all.py [--list]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """The benchmark scripts, sorted by name."""
    return [s for s in sorted(HERE.glob("*.py"))
            if s.name != Path(__file__).name and not s.name.startswith("_")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the scripts, run nothing")
    args = parser.parse_args(argv)
    for script in scripts():
        if args.list:
            print(script.name)
            continue
        print(f"== {script.name}", flush=True)
        subprocess.run([sys.executable, str(script)], check=True)


if __name__ == "__main__":
    main()
