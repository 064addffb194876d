"""Fixtures of the firmware tests: the firmware in a child process on a pty, under
CPython or under MicroPython (the WebAssembly build, run by Node.js, installed from the
npm registry into a cache folder on first use)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

RUNNER_PY = Path(__file__).resolve().parents[2] / "firmware" / "micropython" / "wasm" / "runner.py"


def _load_runner():
    name = "physnn_firmware_runner"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, RUNNER_PY)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


runner = _load_runner()


@pytest.fixture(scope="session")
def micropython_js():
    """Path of the installed ``micropython.mjs``: skips only when Node.js is missing; a
    failed install fails the test with npm's output."""
    try:
        runner.tools()
    except runner.NodeMissing as err:
        pytest.skip(str(err))
    try:
        return runner.install()
    except runner.InstallError as err:
        pytest.fail(str(err), pytrace=False)


@pytest.fixture(params=runner.RUNTIMES)
def runtime(request):
    """Each exchange test runs against both: ``"cpython"`` and ``"micropython"``."""
    if request.param == "micropython":
        request.getfixturevalue("micropython_js")
    return request.param


@pytest.fixture
def start(runtime):
    """``start(**options)``: a :class:`FirmwareProcess` under ``runtime``, closed after."""
    started = []

    def _start(**options):
        fw = runner.FirmwareProcess(runtime, **options)
        started.append(fw)
        return fw

    yield _start
    for fw in started:
        fw.close()
