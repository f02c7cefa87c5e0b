"""DirectoryWatch: a batch per burst of files landing, the paths as the kernel named them;
the watched directory going away is an error, not a silent end."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from dsa110d.errors import InputFileError
from dsa110d.services import dirwatch

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not dirwatch.available(), reason="inotify is Linux's"),
]


async def test_a_burst_is_one_batch_of_the_paths_written_or_moved_in(tmp_path: Path) -> None:
    async with dirwatch.DirectoryWatch(tmp_path) as watch:
        (tmp_path / "a.hdf5").write_bytes(b"x")
        (tmp_path / "b.tmp").write_bytes(b"y")
        os.rename(tmp_path / "b.tmp", tmp_path / "b.hdf5")
        with anyio.fail_after(5):
            async for paths in watch.batches(debounce_ms=200, step_ms=20):
                break
    assert {str(tmp_path / n) for n in ("a.hdf5", "b.hdf5")} <= paths


async def test_the_watched_directory_removed_raises(tmp_path: Path) -> None:
    watched = tmp_path / "incoming"
    watched.mkdir()
    async with dirwatch.DirectoryWatch(watched) as watch:
        watched.rmdir()
        with anyio.fail_after(5), pytest.raises(InputFileError, match="removed or moved"):
            async for _ in watch.batches(debounce_ms=50, step_ms=10):
                pass


async def test_a_missing_directory_cannot_be_watched(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot watch"):
        async with dirwatch.DirectoryWatch(tmp_path / "absent"):
            pass
