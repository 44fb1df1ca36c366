"""Atomic writes: readers see the old file or the complete new one, never a partial write."""
from __future__ import annotations

import json

import pytest

from pipelines.core.files import atomic_dir, atomic_path, write_json


def test_write_json_round_trip(tmp_path):
    write_json(tmp_path / "a" / "m.json", {"b": 1, "a": 2})
    assert json.loads((tmp_path / "a" / "m.json").read_text()) == {"a": 2, "b": 1}


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "trunc')
            raise RuntimeError("killed half-way")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_disk_full_during_write_is_a_clear_error(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    write_json(target, {"v": 1})

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_bytes", full)
    with pytest.raises(OSError, match="No space left"):
        write_json(target, {"v": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_atomic_dir_replaces_whole_folder_or_nothing(tmp_path):
    out = tmp_path / "ds"
    with atomic_dir(out) as tmp:
        (tmp / "x.txt").write_text("1")
    assert (out / "x.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "y.txt").write_text("2")
            raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["x.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
