"""Atomic publication: outputs appear under their final name only when complete.

A directory output (a Measurement Set) is written into a temporary sibling, renamed into
place and then given a completion marker. A file output is written to a temporary sibling and
renamed. "It exists" therefore means "it is complete".

"Complete" also holds after a power cut: :func:`publish` makes the data durable before its
name does (every file and directory of the tree fsynced, then the rename, then the parent
directory fsynced, then the marker and its directory fsynced). Without it the page cache may
write the rename and the marker back before the data, and a set the state server records as
converted (it fsyncs every write) would lie on disk as empty files under its final name.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

COMPLETE_MARKER = ".dsa110d-complete"
TEMP_PREFIX = ".tmp-"
STAGING_DIR = ".staging"
"""Under ``paths.results_dir``: a block run writes its outputs into its own directory here
(``<block>.v<version>.t<lease token>``) and publishes them into place when it commits."""
OUTPUT_DIR_MODE = 0o750
OUTPUT_FILE_MODE = 0o640
_FENCED = re.compile(r"^(?P<stem>.+)\.v(?P<version>\d+)\.t(?P<token>\d+)(?P<suffix>\.[^.]+)$")


def fenced_name(path: Path, version: int, token: int) -> Path:
    """The name a block run publishes ``path`` under: the run's version and its lease's
    fencing token before the suffix (``photometry/B.parquet`` -> ``photometry/B.v2.t7.parquet``).

    Tokens are unique, so two holders of a block (a paused one that lost the lease, and the
    one that took it over) never write the same path: the stale one cannot overwrite the
    newer one's results, whatever the timing.
    """
    return path.with_name(f"{path.stem}.v{version}.t{token}{path.suffix}")


def unfenced(name: str) -> tuple[str, int, int]:
    """``(name without version and token, version, token)`` of a :func:`fenced_name`; a name
    without them (written before names were fenced) is ``(name, 0, 0)``: older than any."""
    match = _FENCED.match(name)
    if match is None:
        return name, 0, 0
    base = match["stem"] + match["suffix"]
    return base, int(match["version"]), int(match["token"])


def superseded_outputs(finals: list[Path], token: int) -> list[Path]:
    """The files beside each of ``finals`` (a committed run's outputs, published under
    ``token``) that hold the same output under an older token, or under its name from before
    names were fenced: the previous version, leftovers of superseded holders. A newer token's
    file is never among them."""
    found = []
    for final in finals:
        base = unfenced(final.name)[0]
        pattern = f"{glob.escape(Path(base).stem)}*{glob.escape(Path(base).suffix)}"
        for other in sorted(final.parent.glob(pattern)):
            other_base, _, other_token = unfenced(other.name)
            if other_base == base and other_token < token and other.is_file():
                found.append(other)
    return found


def newest_fenced(names: list[str]) -> list[str]:
    """Of the names that :func:`unfenced` maps to one base name, only the newest token's."""
    best: dict[str, tuple[int, str]] = {}
    for name in names:
        base, _, token = unfenced(name)
        if base not in best or token > best[base][0]:
            best[base] = (token, name)
    return sorted(name for _, name in best.values())


def temp_sibling(final: Path) -> Path:
    """A unique temporary path in the same directory (same filesystem, so rename is atomic)."""
    return final.with_name(f"{TEMP_PREFIX}{final.name}.{uuid.uuid4().hex[:8]}")


def is_complete_dir(path: Path) -> bool:
    """True for a directory output that was published whole."""
    return (path / COMPLETE_MARKER).is_file()


def is_temporary(path: Path) -> bool:
    """True for a name made by :func:`temp_sibling` (left behind only by a crash)."""
    return path.name.startswith(TEMP_PREFIX)


def fsync_path(path: Path) -> None:
    """Flush one file's or directory's data and metadata to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file of ``root`` (a file or a directory tree), then every directory from the
    leaves up, so that each directory's entries name data that is already on the disk."""
    if not root.is_dir():
        fsync_path(root)
        return
    for directory, _subdirs, files in os.walk(root, topdown=False):
        here = Path(directory)
        for name in files:
            if not (here / name).is_symlink():
                fsync_path(here / name)
        fsync_path(here)


def publish(temp: Path, final: Path, *, marker: bool = False) -> None:
    """Make ``temp`` (a file or a tree) durable, rename it to ``final`` and make the rename
    durable; with ``marker``, then write the completion marker inside ``final`` durably.

    The order is what makes "it exists (and is marked complete)" survive a power cut: no
    rename reaches the disk before the data it names, and no marker before the rename.
    """
    fsync_tree(temp)
    os.replace(temp, final)
    fsync_path(final.parent)
    if marker:
        flag = os.open(final / COMPLETE_MARKER, os.O_WRONLY | os.O_CREAT, OUTPUT_FILE_MODE)
        try:
            os.fsync(flag)
        finally:
            os.close(flag)
        fsync_path(final)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory; on success publish it durably to ``final`` and mark it
    complete (:func:`publish`).

    An existing complete ``final`` is an error for the caller to avoid (check
    :func:`is_complete_dir` first); an incomplete one (a crash before the marker) is replaced.
    On any failure the temporary directory is removed and nothing appears under ``final``.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(final)
    temp.mkdir(mode=OUTPUT_DIR_MODE)
    try:
        yield temp
        if final.exists():
            shutil.rmtree(final)
        publish(temp, final, marker=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary file path; on success publish it durably to ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(final)
    try:
        yield temp
        if temp.exists():
            temp.chmod(OUTPUT_FILE_MODE)
        publish(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
