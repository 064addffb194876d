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
