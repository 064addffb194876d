"""PhyLL on drifting physics: accuracy of a network that keeps training against the same
network frozen when the drift starts (the PhyLL claim of robustness to perturbations).

Runs examples/drift_tracking.py (two cavity layers, digits; detector and actuator gains
drift linearly after the warm-up) and prints both accuracies after the drift and their
ratio. Writes drift.png to --out. Never asserts.

    .venv/bin/python bench/drift_tracking.py [--epochs 12] [--rate 0.3] [--out runs/drift]
"""

from __future__ import annotations

import subprocess
import sys

from _common import ROOT, machine

if __name__ == "__main__":
    print(machine())
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "drift_tracking.py"),
                           *sys.argv[1:]], capture_output=True, text=True, check=True)
    print(proc.stdout, end="")
    final = proc.stdout.strip().splitlines()[-1]
    online = float(final.split("online ")[1].split(",")[0])
    frozen = float(final.split("frozen ")[1].split(";")[0])
    print(f"after the drift: online PhyLL {online:.3f}, frozen {frozen:.3f}, "
          f"ratio online / frozen {online / frozen:.2f}")
