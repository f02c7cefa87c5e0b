"""``dsa110d convert`` as a process: converts a set, is idempotent, and reports bad input
in one line with a non-zero exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[4] / "src"


def dsa110d(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from dsa110d.cli.daemon import main; main()"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=100
    )


@pytest.mark.timeout(120)
def test_convert_writes_the_ms_then_reuses_it(tiny_set: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "set.ms"
    first = dsa110d("convert", *map(str, tiny_set), "--out", str(out), "--json")
    assert first.returncode == 0, first.stderr
    record = json.loads(first.stdout)
    assert record["ms"] == str(out) and not record["reused"] and record["n_channels"] > 0
    again = dsa110d("convert", *map(str, tiny_set), "--out", str(out))
    assert again.returncode == 0 and "exists" in again.stdout


@pytest.mark.timeout(120)
def test_convert_partial_and_bad_input(tiny_set: list[Path], tmp_path: Path) -> None:
    some = [str(p) for p in tiny_set if "_sb07" not in p.name]
    refused = dsa110d("convert", *some, "--out", str(tmp_path / "a.ms"))
    assert refused.returncode == 1 and "partial" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    flagged = dsa110d("convert", *some, "--out", str(tmp_path / "b.ms"), "--partial")
    assert flagged.returncode == 0 and "missing subbands [7] flagged" in flagged.stdout
    tiny_set[0].write_bytes(b"garbage")
    bad = dsa110d("convert", *map(str, tiny_set), "--out", str(tmp_path / "c.ms"))
    assert bad.returncode == 1 and str(tiny_set[0]) in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
