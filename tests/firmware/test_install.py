"""Installing MicroPython's WebAssembly build: reused from the cache, npm's error raised
as it is, a clear message when Node.js is missing. Nothing here reaches a registry."""

import json
import sys

import pytest

runner = sys.modules["physnn_firmware_runner"]  # loaded by this folder's conftest


def test_a_failed_npm_install_raises_npm_s_error(monkeypatch, tmp_path):
    try:
        runner.tools()
    except runner.NodeMissing as err:
        pytest.skip(str(err))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")  # nothing listens
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    with pytest.raises(runner.InstallError, match=r"npm ci of @micropython/\S+@1\.27\.0 "
                                                  r"failed \(exit \d+\):\n.*npm error"):
        runner.install()
    left = [p.name for p in (tmp_path / "physnn" / "npm").iterdir()]
    assert left == ["_cacache"], left  # no half-installed folder


def test_an_installed_package_is_reused_without_npm(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(runner, "tools", lambda: ("node", "npm"))
    monkeypatch.setattr(runner.subprocess, "run", lambda *a, **k: pytest.fail("npm ran"))
    folder = runner.install_folder()
    assert folder.parent == tmp_path / "physnn" / "npm"
    mjs = folder / "node_modules" / runner.PACKAGE / "micropython.mjs"
    mjs.parent.mkdir(parents=True)
    mjs.write_text("")
    with pytest.raises(pytest.fail.Exception, match="npm ran"):
        runner.install()  # not marked complete: npm runs again
    (folder / ".complete").write_text("1.27.0\n")
    assert runner.install() == mjs


def test_the_pin_is_exact_and_integrity_checked():
    lock = json.loads((runner.HERE / "package-lock.json").read_text())
    entry = lock["packages"][f"node_modules/{runner.PACKAGE}"]
    assert runner.pinned_version() == entry["version"] == "1.27.0"
    assert entry["integrity"].startswith("sha512-")
    package = json.loads((runner.HERE / "package.json").read_text())
    assert package["dependencies"][runner.PACKAGE] == "1.27.0"  # no range


def test_missing_node_is_said_clearly(monkeypatch):
    monkeypatch.setattr(runner.shutil, "which", lambda name: None)
    with pytest.raises(runner.NodeMissing, match="node and npm not on PATH"):
        runner.tools()
