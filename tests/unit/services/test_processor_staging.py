"""A block run removes the staging left by earlier (dead) holders of its lease, nothing else."""

from __future__ import annotations

from pathlib import Path

from dsa110d.services.processor import remove_stale_staging


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
