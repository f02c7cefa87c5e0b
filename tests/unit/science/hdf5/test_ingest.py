"""The watcher's pure rules: settling, the watched-tree check, set choice, timeouts, payload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsa110d.errors import InputFileError
from dsa110d.science.hdf5.ingest import (
    BY_NAME_SUFFIX,
    Look,
    by_name_set_id,
    disagreement,
    incomplete_action,
    is_settled,
    look_at,
    move_files,
    nearest_set,
    resolve_inside,
    settle_wait_sec,
)


def test_a_file_untouched_for_the_interval_needs_no_wait() -> None:
    look = Look(10, mtime_ns=1_000_000_000, is_regular=True)
    assert settle_wait_sec(look, now_ns=1_500_000_000, interval_sec=0.2) == 0.0
    assert settle_wait_sec(look, now_ns=1_050_000_000, interval_sec=0.2) == pytest.approx(0.15)


def test_settled_needs_two_equal_looks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    first = look_at(path)
    assert is_settled(first, look_at(path))
    with path.open("ab") as f:
        f.write(b"d")
    assert not is_settled(first, look_at(path))
    assert not is_settled(None, None)
    assert look_at(tmp_path / "gone") is None


def test_resolve_inside_refuses_a_symlink_out(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    (tmp_path / "out.hdf5").write_bytes(b"x")
    os.symlink(tmp_path / "out.hdf5", root / "a.hdf5")
    with pytest.raises(InputFileError, match="symlink points outside the watched directory"):
        resolve_inside(root / "a.hdf5", root)
    (root / "b.hdf5").write_bytes(b"y")
    assert resolve_inside(root / "b.hdf5", root) == (root / "b.hdf5").resolve()


def test_nearest_set_prefers_timed_sets_within_tolerance() -> None:
    sets = [("A", 100.0), ("B" + BY_NAME_SUFFIX, 101.0), ("C", 400.0)]
    assert nearest_set(102.0, sets, 60) == "A"
    assert nearest_set(101.0, [("B" + BY_NAME_SUFFIX, 101.0)], 60) == "B" + BY_NAME_SUFFIX
    assert nearest_set(250.0, sets, 60) is None
    assert by_name_set_id(0.0) == "1970-01-01T00:00:00" + BY_NAME_SUFFIX


def test_disagreement_names_the_file_and_the_set() -> None:
    path = "/in/2026-03-20T06:00:03_sb03.hdf5"
    others = ["/in/2026-03-20T06:00:01_sb00.hdf5"]
    reason = disagreement(path, 2461119.75 + 1 / 86400, "S", 2461119.75, others, 60)
    assert reason is not None and path in reason and "set S" in reason and "+1.000 s" in reason
    assert disagreement(path, 2461119.75, "S", 2461119.75, others, 60) is None
    far = ["/in/2026-03-20T07:00:01_sb00.hdf5"]
    assert disagreement(path, 2461119.76, "S", 2461119.75, far, 60) is None


@pytest.mark.parametrize(
    ("policy", "age", "n", "action"),
    [
        ("wait", 10, 3, "none"),
        ("wait", 301, 3, "wait"),
        ("partial", 301, 3, "partial"),
        ("partial", 301, 0, "fail"),
        ("fail", 301, 3, "fail"),
    ],
)
def test_incomplete_action(policy: str, age: float, n: int, action: str) -> None:
    assert incomplete_action(policy, age, 300, n) == action


def test_move_files_moves_content_unchanged_and_is_repeatable(tmp_path: Path) -> None:
    src = tmp_path / "in" / "a.hdf5"
    src.parent.mkdir()
    src.write_bytes(b"payload")
    moved = move_files([str(src)], tmp_path / "done")
    assert moved == [str(tmp_path / "done" / "a.hdf5")]
    assert Path(moved[0]).read_bytes() == b"payload" and not src.exists()
    assert move_files([str(src)], tmp_path / "done") == []
