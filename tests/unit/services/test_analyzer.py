"""The analyzer finds every path a block message carries, so each can be confined."""

from __future__ import annotations

from dsa110d.services.analyzer import message_paths


def test_paths_under_path_keys_are_found_at_any_depth() -> None:
    payload = {
        "kind": "block",
        "block_id": "2026-01-01T00:00:00",  # not a path
        "photometry": "/data/results/photometry/b.parquet",
        "outputs": {"image": "/data/results/b.fits", "n": 3},
        "ms_paths": ["/data/ms/a.ms", "/data/ms/b.ms"],
        "scratch_dir": "/tmp/x",
        "stages": [{"name": "flag", "log_path": "/data/results/flag.log"}],
    }
    assert sorted(message_paths(payload)) == [
        "/data/ms/a.ms",
        "/data/ms/b.ms",
        "/data/results/b.fits",
        "/data/results/flag.log",
        "/data/results/photometry/b.parquet",
        "/tmp/x",
    ]
