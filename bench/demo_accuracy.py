"""`make demo` as a benchmark: PhyLL on two simulated cavities, digits, default settings.

Anchors: the issue's targets of test accuracy >= 0.97 in under 120 s on 2 cores. Runs
the demo command in a subprocess (process start and imports included) for each seed
and prints accuracy, seconds and the ratios to the targets. It never fails on time.

    .venv/bin/python bench/demo_accuracy.py [--seeds 0 1 2 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_ACCURACY = 0.97
TARGET_SECONDS = 120.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args(argv)
    accuracies, walls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            out = Path(tmp) / f"seed{seed}"
            cmd = [sys.executable, "-m", "phys.cli", "train", "--device", "cavity",
                   "--data", "digits", "--seed", str(seed), "--out", str(out), "--no-progress"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            wall = time.perf_counter() - t0
            results = json.loads((out / "results.json").read_text())
            accuracies.append(results["test_accuracy"])
            walls.append(wall)
            print(f"seed {seed}: test accuracy {results['test_accuracy']:.4f}  "
                  f"train {results['train_accuracy']:.4f}  wall {wall:.1f} s  "
                  f"(training {results['seconds']:.1f} s, {results['device_queries']} device "
                  f"queries, {results['device_samples']} samples)")
    mean_acc = statistics.mean(accuracies)
    print(f"mean test accuracy {mean_acc:.4f} over {len(accuracies)} seed(s); "
          f"ratio to target {TARGET_ACCURACY}: {mean_acc / TARGET_ACCURACY:.3f}")
    print(f"worst wall time {max(walls):.1f} s; ratio to the {TARGET_SECONDS:.0f} s budget: "
          f"{max(walls) / TARGET_SECONDS:.3f}")


if __name__ == "__main__":
    main()
