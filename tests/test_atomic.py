import json
import os

import pytest

from phys import atomic


def test_writes_and_replaces(tmp_path):
    p = tmp_path / "sub" / "f.json"
    atomic.write_json(p, {"a": 1})
    assert json.loads(p.read_text()) == {"a": 1}
    atomic.write_text(p, "new")
    assert p.read_text() == "new"
    assert [f.name for f in p.parent.iterdir()] == ["f.json"]  # no temporary left


def test_failure_leaves_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "keep.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic.atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_unserialisable_json_keeps_old_file(tmp_path):
    p = tmp_path / "r.json"
    atomic.write_json(p, {"ok": True})
    with pytest.raises(TypeError):
        atomic.write_json(p, {"bad": object()})
    assert json.loads(p.read_text()) == {"ok": True}


def test_a_full_disk_is_an_error_naming_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno

    p = tmp_path / "checkpoint.pt"
    atomic.write_bytes(p, b"old")
    real = os.write

    def full(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", full)
    for write in (lambda: atomic.write_bytes(p, b"new" * 1000),
                  lambda: atomic.write_json(p, {"new": 1})):
        with pytest.raises(atomic.WriteError) as caught:
            write()
        assert str(caught.value) == f"cannot write {p}: the disk is full (No space left on device)"
        assert caught.value.errno == errno.ENOSPC
        assert isinstance(caught.value, RuntimeError)  # the command line reports it
    monkeypatch.undo()
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["checkpoint.pt"]
