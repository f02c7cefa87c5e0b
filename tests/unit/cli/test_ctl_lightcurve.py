"""``dsa110ctl lightcurve`` reads the processor's Parquet through the one photometry reader and
prints or writes one source's light curve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import votable
from typer.testing import CliRunner

from dsa110d.cli import ctl
from dsa110d.science.photometry import stage as photometry
from tests.integration.services.seed import PARTIAL, block_rows

SERVICES_YAML = Path(__file__).resolve().parents[3] / "etc" / "dsa110" / "services.yaml"
N_BLOCKS = 3


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Blocks 0..2 written by the processor's writer; block 1 re-run as version 2."""
    results = tmp_path / "results"
    for b in range(N_BLOCKS):
        frame = block_rows(b, version=2 if b == 1 else 1)
        path = results / "photometry" / f"{frame['block_id'].iloc[0]}.parquet"
        photometry.write_photometry(frame, path)
    monkeypatch.setenv("DSA110__PATHS__RESULTS_DIR", str(results))
    return results


def invoke(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(
        ctl.app, ["lightcurve", *args, "--config", str(SERVICES_YAML), "--env", "testing"]
    )
    return done.exit_code, done.output


def test_json_lists_every_block_with_the_flagged_row_unusable(results: Path) -> None:
    code, out = invoke(PARTIAL[0], "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert [r["block_id"] for r in rows] == [f"2026-01-01T0{b}:00:00" for b in range(N_BLOCKS)]
    assert [r["usable"] for r in rows] == [True, False, True]  # block 1: partial_transit
    assert rows[1]["flag_names"] == "partial_transit"
    want = block_rows(1, version=2).set_index("source_id").loc[PARTIAL[0], "flux_jy"]
    assert rows[1]["flux_jy"] == want  # the re-run's version


def test_output_as_votable_reads_back(results: Path, tmp_path: Path) -> None:
    target = tmp_path / "lc.vot"
    code, out = invoke("S000", "--output", str(target), "--format", "votable")
    assert code == 0, out
    assert f"3 measurements of S000 written to {target}" in " ".join(out.split())
    table = votable.parse_single_table(str(target)).to_table()
    want = [block_rows(b).set_index("source_id").loc["S000", "flux_jy"] for b in (0,)]
    assert np.asarray(table["flux_jy"])[0] == want[0]
    assert len(table) == N_BLOCKS


def test_an_unknown_source_and_a_bad_format(results: Path) -> None:
    assert invoke("nope") == (0, "no photometry of nope\n")
    code, out = invoke("S000", "--format", "fits", "--output", "x")
    assert code == 2 and "'fits' is not csv or votable" in out
