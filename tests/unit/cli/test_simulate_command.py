"""`dsa110d simulate` writes a set and its truth; bad options are one-line usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dsa110d"), "simulate", *args], capture_output=True, text=True, timeout=90
    )


def test_simulate_writes_files_and_truth(tmp_path: Path) -> None:
    out = tmp_path / "incoming"
    truth = tmp_path / "truth.json"
    done = run(
        "--out", str(out), "--start", "2026-03-20T06:00:00Z", "--sets", "2",
        "--scale", "tiny", "--subbands", "3", "--seed", "4", "--truth", str(truth),
        "--variable-fraction", "0.2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote 6 files" in done.stdout
    assert len(list(out.glob("*_sb0[0-2].hdf5"))) == 6
    record = json.loads(truth.read_text())
    assert record["seed"] == 4 and record["n_subbands"] == 3
    assert record["sets"][0]["set_id"] == "2026-03-20T06:00:00"


def test_bad_start_is_a_usage_error(tmp_path: Path) -> None:
    done = run("--out", str(tmp_path), "--start", "yesterday", "--sets", "1")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "dsa110d: --start: 'yesterday' is not an ISO date-time (e.g. 2026-01-01T00:00:00)"
    )


def test_bad_catalog_names_the_file_and_line(tmp_path: Path) -> None:
    catalog = tmp_path / "sky.csv"
    catalog.write_text("id,ra_deg,dec_deg,flux_jy\nA,10,95,1\n")
    done = run("--out", str(tmp_path / "o"), "--start", "2026-03-20T06:00:00", "--sets", "1",
               "--scale", "tiny", "--catalog", str(catalog))  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"dsa110d: {catalog}: line 2, column dec_deg: 95.0 is outside [-90.0, 90.0]"
    ]


def test_unknown_scale_is_a_usage_error(tmp_path: Path) -> None:
    done = run("--out", str(tmp_path), "--start", "2026-03-20T06:00:00", "--sets", "1",
               "--scale", "huge")  # fmt: skip
    assert done.returncode == 2
    assert "unknown scale 'huge'" in done.stderr
