"""Atomic publication survives a power cut: traced under strace, a real conversion (and a
Parquet table) flushes every data file and directory before the rename that names them, and
the rename before the completion marker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dsa110d.science.atomic import COMPLETE_MARKER, TEMP_PREFIX, is_complete_dir

SRC = Path(__file__).resolve().parents[3] / "src"
TRACED = "fsync,fdatasync,rename,renameat,renameat2"
FSYNC = re.compile(r"\b(?:fsync|fdatasync)\(\d+<(?P<path>[^>]*)>")
RENAME = re.compile(
    r"\brename(?:at2?)?\((?:(?:AT_FDCWD|\d+<[^>]*>), )?\"(?P<old>[^\"]*)\", "
    r"(?:(?:AT_FDCWD|\d+<[^>]*>), )?\"(?P<new>[^\"]*)\""
)


@dataclass(frozen=True)
class Event:
    kind: str  # "fsync" or "rename"
    path: str  # the file synced, or the rename's target
    source: str = ""  # the rename's source


def traced(tmp_path: Path, code: str, *args: str) -> list[Event]:
    """Run ``python -c code args`` under ``strace -f`` (a test dependency: the Makefile's
    DEB_TEST_DEPS); its fsyncs and renames, in order."""
    log = tmp_path / "strace.log"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        ["strace", "-f", "-y", "-qq", "-s", "4096", "-e", f"trace={TRACED}", "-o", str(log),
         sys.executable, "-c", code, *args],
        capture_output=True, text=True, env=env, timeout=200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    events = []
    for line in log.read_text().splitlines():
        if "resumed>" in line and "(" not in line.split("resumed>")[0]:
            continue  # the tail of a call whose start (with its arguments) came earlier
        if (found := FSYNC.search(line)) is not None:
            events.append(Event("fsync", found["path"]))
        elif (found := RENAME.search(line)) is not None:
            events.append(Event("rename", found["new"], found["old"]))
    return events


def first(events: list[Event], kind: str, path: str) -> int:
    hits = [i for i, e in enumerate(events) if e.kind == kind and e.path == path]
    assert hits, f"no {kind} of {path} traced"
    return hits[0]


@pytest.mark.timeout(240)
def test_conversion_flushes_the_tree_before_the_rename_and_the_rename_before_the_marker(
    tiny_set: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "ms" / "set.ms"
    code = "from dsa110d.cli.daemon import main; main()"
    events = traced(tmp_path, code, "convert", *map(str, tiny_set), "--out", str(out))
    assert is_complete_dir(out)
    renames = [i for i, e in enumerate(events) if e.kind == "rename" and e.path == str(out)]
    assert len(renames) == 1, f"the MS was renamed into place {len(renames)} times"
    published = renames[0]
    temp = Path(events[published].source)
    assert temp.name.startswith(TEMP_PREFIX) and temp.parent == out.parent
    synced_before = {e.path for e in events[:published] if e.kind == "fsync"}
    tree = [p for p in out.rglob("*") if p.name != COMPLETE_MARKER]
    assert any(p.is_file() for p in tree) and any(p.is_dir() for p in tree)
    unsynced = sorted(
        str(p.relative_to(out))
        for p in [out, *tree]
        if str(temp / p.relative_to(out)) not in synced_before
    )
    assert not unsynced, f"not flushed before the rename: {unsynced}"
    parent = first(events[published:], "fsync", str(out.parent)) + published
    marker = first(events, "fsync", str(out / COMPLETE_MARKER))
    marked = first(events[marker:], "fsync", str(out)) + marker
    assert published < parent < marker < marked


@pytest.mark.timeout(120)
def test_a_parquet_table_is_flushed_before_its_rename_and_the_rename_after(
    tmp_path: Path,
) -> None:
    final = tmp_path / "results" / "table.parquet"
    code = (
        "import sys, pandas as pd; from pathlib import Path\n"
        "from dsa110d.science.atomic import atomic_file\n"
        "with atomic_file(Path(sys.argv[1])) as tmp:\n"
        "    pd.DataFrame({'a': [1.0, 2.0]}).to_parquet(tmp)\n"
    )
    events = traced(tmp_path, code, str(final))
    assert final.is_file()
    published = first(events, "rename", str(final))
    temp = events[published].source
    assert first(events, "fsync", temp) < published
    assert first(events[published:], "fsync", str(final.parent)) >= 1
