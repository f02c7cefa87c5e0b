"""Atomic publication: outputs appear under their final name only when complete.

A directory output (a Measurement Set) is written into a temporary sibling, gets a
completion marker, and is renamed into place. A file output is written to a temporary
sibling and renamed. "It exists" therefore means "it is complete".
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


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory; on success mark it complete and rename it to ``final``.

    An existing complete ``final`` is an error for the caller to avoid (check
    :func:`is_complete_dir` first); an incomplete one (a crash before the marker) is replaced.
    On any failure the temporary directory is removed and nothing appears under ``final``.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(final)
    temp.mkdir(mode=OUTPUT_DIR_MODE)
    try:
        yield temp
        (temp / COMPLETE_MARKER).touch(mode=OUTPUT_FILE_MODE)
        if final.exists():
            shutil.rmtree(final)
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary file path; on success rename it to ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(final)
    try:
        yield temp
        if temp.exists():
            temp.chmod(OUTPUT_FILE_MODE)
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
