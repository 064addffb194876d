"""The README's own-device snippet works as written and passes the conformance suite."""

import re
from pathlib import Path

from phys.testing import check_device

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_starts_with_the_two_commands():
    first_block = re.search(r"```sh\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make demo", "make test"]


def test_own_device_snippet_passes_check_device():
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "_query" in b)
    namespace: dict = {}
    exec(block, namespace)  # noqa: S102 - the README's code, run as a user would
    diode = namespace["Diode"]
    passed = check_device(diode(), reopen=diode)
    assert "seeded" in passed and "batch-split" in passed


def test_own_device_snippet_checks_after_import_phys_alone():
    """As a new user types it: ``import torch, phys``, then ``phys.testing.check_device``."""
    import subprocess
    import sys

    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "_query" in b)
    code = (block + "\nimport torch, phys\n"
            "print(len(phys.testing.check_device(Diode(), reopen=Diode)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 25
