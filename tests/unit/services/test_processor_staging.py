"""Block runs: the staging of earlier (dead) holders goes; outputs are published under names
of their own (version, fencing token) and a commit removes only older tokens' files."""

from __future__ import annotations

from pathlib import Path

from dsa110d.services.processor_jobs import publish_outputs, remove_outputs, remove_superseded
from dsa110d.services.processor_outputs import (
    remove_stale_staging,
    staged_runs,
    staging_is_abandoned,
)


def test_only_older_tokens_of_the_same_block_are_removed(tmp_path: Path) -> None:
    names = [
        "2026-03-20T06:00:00.v1.t3",  # a killed run of this block: goes
        "2026-03-20T06:00:00.v2.t5",  # our own run (token 5): stays
        "2026-03-20T06:00:00.v2.t7",  # a newer holder's: stays
        "2026-03-20T06:05:00.v1.t1",  # another block's: stays
    ]
    for name in names:
        (tmp_path / name / "photometry").mkdir(parents=True)
    remove_stale_staging(tmp_path, "2026-03-20T06:00:00", 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == names[1:]


BLOCK = "2026-03-20T06:00:00"


def stage(staging: Path, content: bytes) -> dict[str, str]:
    (staging / "photometry").mkdir(parents=True, exist_ok=True)
    (staging / "photometry" / f"{BLOCK}.parquet").write_bytes(content)
    return {"photometry": f"photometry/{BLOCK}.parquet"}


def test_two_holders_of_a_block_never_publish_to_the_same_path(tmp_path: Path) -> None:
    results = tmp_path / "results"
    new = publish_outputs(tmp_path / "new", results, stage(tmp_path / "new", b"new"), 1, 6)
    # the holder it superseded (token 5) wakes up and renames its run's outputs into place
    old = publish_outputs(tmp_path / "old", results, stage(tmp_path / "old", b"stale"), 1, 5)
    assert new["photometry"] != old["photometry"]
    assert Path(new["photometry"]).read_bytes() == b"new"
    assert Path(new["photometry"]).name == f"{BLOCK}.v1.t6.parquet"


def test_a_commit_removes_older_tokens_files_of_its_outputs_only(tmp_path: Path) -> None:
    photometry = tmp_path / "results" / "photometry"
    photometry.mkdir(parents=True)
    names = [
        f"{BLOCK}.parquet",  # written before names were fenced: goes
        f"{BLOCK}.v1.t3.parquet",  # the previous version: goes
        f"{BLOCK}.v2.t5.parquet",  # a superseded holder's leftover: goes
        f"{BLOCK}.v3.t9.parquet",  # a newer holder's, not yet committed: stays
        "2026-03-20T06:05:00.v1.t2.parquet",  # another block's: stays
        f"{BLOCK}.v1.t3.fits",  # another kind of output: stays
    ]
    for name in names:
        (photometry / name).write_bytes(b"x")
    ours = publish_outputs(tmp_path / "s", tmp_path / "results", stage(tmp_path / "s", b"v2"), 2, 6)
    removed = remove_superseded(ours, 6)
    assert sorted(Path(p).name for p in removed) == sorted(names[:3])
    left = sorted(p.name for p in photometry.iterdir())
    assert left == sorted([*names[3:], Path(ours["photometry"]).name])
    remove_outputs(ours)
    assert not Path(ours["photometry"]).exists()


def test_a_staging_directory_is_abandoned_once_committed_or_superseded(tmp_path: Path) -> None:
    # (version, token) of the staging against the record's committed version 1 and newest 7
    cases = {
        (1, 5): True,  # its own version committed (it died before cleaning up), or another's
        (2, 5): True,  # the next version, but a newer holder (7) has the lease: cannot commit
        (2, 7): False,  # the newest holder's run of the next version: may still commit
        (3, 7): False,
    }
    for (version, token), abandoned in cases.items():
        assert staging_is_abandoned(version, token, 1, 7) is abandoned, (version, token)
    for name in ["2026-03-20T06:00:00.v2.t7", "junk", "2026-03-20T06:00:00.vx.t1"]:
        (tmp_path / name).mkdir()
    (tmp_path / "2026-03-20T06:05:00.v1.t3").write_text("a file, not a run's directory")
    assert staged_runs(tmp_path) == [
        (tmp_path / "2026-03-20T06:00:00.v2.t7", "2026-03-20T06:00:00", 2, 7)
    ]
    assert staged_runs(tmp_path / "absent") == []
