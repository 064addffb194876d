"""What recording every device query costs `make demo`: the demo with `--record` and with
`--no-record`, and the time to open a `recorded:` device from that recording the first
time (a fit) and the second time (from its cache).

Target: recording at most 5 % of training time. Runs the demo (`phys train --device
cavity --data digits`) in this process on `--threads` torch threads (default 1),
alternating with and without a
recording, `--repeat` times each; prints the medians of the training seconds and the
overhead in percent against the target, and what the runs with a recording state of it
(`results.json`'s `recording`): the seconds the training thread spent recording, and the
processor seconds of the recording's writer thread (on another core when one is free).
It never fails on time.

    .venv/bin/python bench/recording_overhead.py [--repeat 3] [--epochs 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

TARGET_PERCENT = 5.0


def _train(out: Path, record: bool, epochs: int | None) -> dict:
    from phys.experiment import TrainSpec
    from phys.runs import train

    spec = TrainSpec(device="cavity", data="digits",
                     **({} if epochs is None else {"epochs": epochs}))
    return train(spec, out=out, record=record, tensorboard=False, overwrite=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="runs with and without (median)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the demo's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    import torch

    import phys

    torch.set_num_threads(args.threads)
    times: dict[bool, list[float]] = {True: [], False: []}
    inside: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for record in ((True, False) if i % 2 == 0 else (False, True)):
                result = _train(Path(tmp) / str(record), record, args.epochs)
                times[record].append(round(float(result["seconds"]), 2))
                if record:
                    inside.append((result["recording"]["seconds"] / result["seconds"],
                                   result["recording"]["writer_cpu_seconds"]))
        recording = Path(tmp) / "True" / "measurements.h5"
        size = recording.stat().st_size
        opens = []
        for _ in range(2):
            t0 = time.perf_counter()
            phys.open(f"recorded:{recording}").close()
            opens.append(time.perf_counter() - t0)
    with_, without = (statistics.median(times[r]) for r in (True, False))
    overhead = 100 * (with_ - without) / without
    print(f"training seconds with / without recording: {with_:.2f} / {without:.2f} "
          f"(runs: {times[True]} / {times[False]})")
    print(f"recording overhead {overhead:.2f} %  ratio to target {TARGET_PERCENT:g} %: "
          f"{overhead / TARGET_PERCENT:.2f}; measurements.h5 {size / 2**20:.1f} MiB")
    share, writer = (statistics.median(v) for v in zip(*inside, strict=True))
    print(f"inside the runs: the training thread spent {100 * share:.2f} % of training "
          f"recording (ratio to target {100 * share / TARGET_PERCENT:.2f}); writer thread "
          f"{writer:.2f} processor seconds")
    print(f"recorded: device from it: first open {opens[0]:.2f} s (fit), second "
          f"{opens[1]:.3f} s (cache)")


if __name__ == "__main__":
    main()
