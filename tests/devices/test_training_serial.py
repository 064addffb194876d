"""Training through the virtual lab device: ``phys emulate`` in one process, ``phys train
--device serial://PORT`` in another, against the same configuration on the simulator."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from phys.experiment import TrainSpec
from phys.runs import train as train_run

ROOT = Path(__file__).resolve().parents[2]
PHYS = [sys.executable, "-m", "phys.cli"]
PHYSICS = {"n_in": 16, "n_out": 16, "seed": 0}
CONFIG = dict(data="digits", layers=2, hidden=32, epochs=2, negatives="random", lr=1e-2,
              seed=0)
# one torch thread per process: on busy shared cores, spinning OpenMP threads cost more
# than they give at these sizes
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("phys emulate wrote no port file")


def test_train_from_another_process_matches_the_simulator(tmp_path, one_thread):
    port_file = tmp_path / "port"
    options = [x for k, v in PHYSICS.items() for x in ("-o", f"{k}={v}")]
    emulate = subprocess.Popen([*PHYS, "emulate", "--device", "cavity", *options,
                                "--port-file", str(port_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT, env=ENV)
    try:
        port = wait_for(port_file, emulate)
        args = [f"--{k.replace('_', '-')}={v}" for k, v in CONFIG.items()]
        train = subprocess.run([*PHYS, "train", "--device", f"serial://{port}", *args,
                                "-o", "latency=0.5", "--no-progress", "--out",
                                str(tmp_path / "serial")],
                               capture_output=True, text=True, timeout=300, cwd=ROOT,
                               env=ENV)
        assert train.returncode == 0, train.stderr
    finally:
        emulate.send_signal(signal.SIGTERM)
        out, err = emulate.communicate(timeout=30)
    assert emulate.returncode == 0, err
    assert out.splitlines()[1] == port and "samples measured" in out.splitlines()[-1]
    through_serial = json.loads((tmp_path / "serial" / "results.json").read_text())
    assert through_serial["device_info"][0]["extra"]["port"] == f"serial://{port}"
    # the link's counters, one entry per layer's device, also printed
    links = through_serial["link"]
    assert len(links) == 2 and all(link["requests"] > 0 for link in links)
    printed = [line for line in train.stdout.splitlines() if line.startswith("link ")]
    assert len(printed) == 2
    assert f"{links[0]['requests']} requests, {links[0]['resends']} resends" in printed[0]

    direct = train_run(TrainSpec(device="cavity", device_options=PHYSICS, **CONFIG))
    assert direct["test_accuracy"] > 0.8
    # the same physics, float32 on the wire: the same accuracy (the cavity's iterative
    # solver may differ in the last digits where batches are split differently)
    assert abs(through_serial["test_accuracy"] - direct["test_accuracy"]) <= 0.02
    assert through_serial["device_samples"] == direct["device_samples"]
