"""One analysis run over photometry files: incremental reading, generations, rebuilds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsa110d.science.variability import metrics as var
from dsa110d.science.variability import plots, run
from dsa110d.science.variability.state import METRIC_RTOL
from tests.integration.services.seed import block_id, photometry_path, seed_blocks, write_block

THRESHOLDS = {"min_data_points": 3, "variability_threshold": 0.1, "p_threshold": 1e-3}


@pytest.fixture(autouse=True)
def _no_cache_no_plot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with an empty worker cache; the eta-V plot (matplotlib, most of a
    run's time, tested with the results and by the integration tests) is not drawn."""
    run._CACHE.clear()
    monkeypatch.setattr(plots, "plot_eta_v", lambda frame, path, thresholds: path)


def analyze(results: Path, minute: int, full: bool = False) -> dict[str, object]:
    return run.analyze(
        str(results), THRESHOLDS, f"2026-11-26T12:{minute:02d}:00+00:00", full, max_light_curves=0
    )


def recomputed(results: Path) -> pd.DataFrame:
    # the seeded blocks, not the broken file a test adds
    files = sorted(run.photometry_dir(results).glob("2026*.parquet"))
    rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    rows["flags"] = run.flags_code(rows["flags"])
    limits = var.Thresholds(3, 0.1, 1e-3)
    return var.metrics_frame(var.recompute(rows), limits)


def assert_matches_recompute(results: Path) -> None:
    got = pd.read_parquet(results / "variability" / "latest.parquet")
    want = recomputed(results)
    assert [str(s) for s in got["source_id"]] == [str(s) for s in want["source_id"]]
    for col in ("n", "mean_flux_jy", "wmean_flux_jy", "v", "eta", "p_constant", "vs", "m"):
        np.testing.assert_allclose(got[col], want[col], rtol=METRIC_RTOL, equal_nan=True)


def test_flags_names_map_to_the_metrics_rule() -> None:
    names = pd.Series(
        ["", "partial_transit", None, "missing_chunks,no_data", "missing_chunks", "new_flag",
         "blended", "blended,partial_transit"],
        dtype="string",
    )  # fmt: skip
    assert list(run.flags_code(names)) == [0, 1, 0, 1, 0, 1, 0, 1]
    ints = pd.Series([0, 4, 0])
    assert list(run.flags_code(ints)) == [0, 4, 0]


def test_the_scan_skips_temporaries_hidden_and_other_files(tmp_path: Path) -> None:
    directory = tmp_path / "photometry"
    directory.mkdir()
    for name in ("a.parquet", ".tmp-b.parquet.1234abcd", ".c.parquet", "d.csv"):
        (directory / name).write_text("x")
    (directory / "e.parquet").mkdir()
    assert list(run.scan_photometry(directory)) == ["a.parquet"]


def test_consecutive_runs_read_only_new_files_and_keep_one_generation(tmp_path: Path) -> None:
    seed_blocks(tmp_path, range(4))
    first = analyze(tmp_path, 0)
    assert first["run"]["files_read"] == 4  # type: ignore[index]
    write_block(tmp_path, 4)
    second = analyze(tmp_path, 1)
    assert second["run"]["state"] == "cached"  # type: ignore[index]
    assert second["run"]["files_read"] == 1  # type: ignore[index]
    root = run.state_root(tmp_path)
    generations = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert generations == [second["run"]["generation"]]  # type: ignore[index]
    assert_matches_recompute(tmp_path)
    third = analyze(tmp_path, 2)  # nothing new: no new generation
    assert third["run"]["generation"] == second["run"]["generation"]  # type: ignore[index]


def test_a_bad_file_is_reported_once_and_the_rest_analysed(tmp_path: Path) -> None:
    seed_blocks(tmp_path, range(4))
    bad = run.photometry_dir(tmp_path) / "broken.parquet"
    bad.write_bytes(b"not parquet at all")
    first = analyze(tmp_path, 0)
    reasons = [b["reason"] for b in first["run"]["bad_files"]]  # type: ignore[index]
    assert len(reasons) == 1 and "broken.parquet" in reasons[0]
    assert first["run"]["files_read"] == 4  # type: ignore[index]
    again = analyze(tmp_path, 1)
    assert again["run"]["bad_files"] == [] and again["run"]["files_read"] == 0  # type: ignore[index]
    assert bad.read_bytes() == b"not parquet at all"  # inputs are never modified
    assert_matches_recompute(tmp_path)


def test_a_removed_file_or_an_older_version_rebuilds_to_the_recomputed_numbers(
    tmp_path: Path,
) -> None:
    seed_blocks(tmp_path, range(5))
    write_block(tmp_path, 2, version=3, scale=1.2)
    analyze(tmp_path, 0)
    photometry_path(tmp_path, 4).unlink()
    removed = analyze(tmp_path, 1)
    assert removed["run"]["state"].startswith("rebuilt: photometry file(s) removed")  # type: ignore[index]
    assert_matches_recompute(tmp_path)
    write_block(tmp_path, 2, version=2)  # an older version replaces the file
    older = analyze(tmp_path, 2)
    assert older["run"]["state"].startswith("rebuilt")  # type: ignore[index]
    assert_matches_recompute(tmp_path)


def test_a_new_generation_links_the_unchanged_block_files(tmp_path: Path) -> None:
    seed_blocks(tmp_path, range(3))
    first = analyze(tmp_path, 0)
    root = run.state_root(tmp_path)
    blocks = root / str(first["run"]["generation"]) / "blocks"  # type: ignore[index]
    inodes = {p.name: p.stat().st_ino for p in blocks.iterdir()}
    write_block(tmp_path, 3)
    run._CACHE.clear()  # as a fresh worker would
    second = analyze(tmp_path, 1)
    assert second["run"]["state"] == "loaded"  # type: ignore[index]
    after = root / str(second["run"]["generation"]) / "blocks"  # type: ignore[index]
    for name, ino in inodes.items():
        assert os.stat(after / name).st_ino == ino
    assert len(list(after.iterdir())) == 4


def test_a_changed_vs_threshold_rebuilds_the_state_and_searches_pairs_at_it(
    tmp_path: Path,
) -> None:
    seed_blocks(tmp_path, range(6))
    analyze(tmp_path, 0)
    before = pd.read_parquet(tmp_path / "variability" / "latest.parquet").set_index("source_id")
    assert 4.3 <= float(before["vs"].loc["T000"]) < 100.0  # the new source's best pair: ~70 sigma
    stricter = {**THRESHOLDS, "vs_threshold": 100.0}
    again = run.analyze(str(tmp_path), stricter, "2026-11-26T12:01:00+00:00", max_light_curves=0)
    assert again["run"]["state"].startswith("rebuilt: ")
    assert "configured 100" in again["run"]["state"]
    got = pd.read_parquet(tmp_path / "variability" / "latest.parquet")
    files = sorted(run.photometry_dir(tmp_path).glob("*.parquet"))
    rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    want = var.metrics_frame(var.recompute(rows, vs_threshold=100.0), run.thresholds_from(stricter))
    np.testing.assert_allclose(got["vs"], want["vs"], rtol=METRIC_RTOL, equal_nan=True)
    assert (got["vs"].dropna() >= 100.0).all() and got["vs"].notna().any()
    assert np.isnan(got.set_index("source_id")["vs"].loc["T000"])


def fenced(results: Path, b: int, version: int, token: int) -> Path:
    """Block ``b``'s file as the processor names it: version and fencing token."""
    return photometry_path(results, b).with_name(f"{block_id(b)}.v{version}.t{token}.parquet")


def write_fenced(results: Path, b: int, version: int, token: int, **kw: float) -> Path:
    write_block(results, b, version=version, **kw)
    return photometry_path(results, b).rename(fenced(results, b, version, token))


def test_a_re_run_under_its_own_name_is_read_incrementally(tmp_path: Path) -> None:
    for b in range(4):
        write_fenced(tmp_path, b, 1, b + 1)
    analyze(tmp_path, 0)
    write_fenced(tmp_path, 2, 2, 8, scale=1.2)  # the re-run is published beside version 1
    published = analyze(tmp_path, 1)
    assert published["run"]["state"] == "cached"  # type: ignore[index]
    assert published["run"]["files_read"] == 1  # type: ignore[index]
    fenced(tmp_path, 2, 1, 3).unlink()  # and, once committed, version 1's file goes
    removed = analyze(tmp_path, 2)
    assert removed["run"]["state"] == "cached"  # type: ignore[index]
    assert removed["run"]["files_read"] == 0  # type: ignore[index]
    assert_matches_recompute(tmp_path)


def test_a_superseded_holders_file_of_the_same_version_never_counts(tmp_path: Path) -> None:
    for b in range(4):
        write_fenced(tmp_path, b, 1, b + 1)
    analyze(tmp_path, 0)
    stale = write_fenced(tmp_path, 2, 2, 5, scale=3.0)  # a holder about to be superseded
    analyze(tmp_path, 1)
    write_fenced(tmp_path, 2, 2, 6, scale=1.2)  # the holder that took the block over
    analyze(tmp_path, 2)
    fenced(tmp_path, 2, 1, 3).unlink()
    newest = sorted(p.name for p in run.photometry_dir(tmp_path).iterdir() if p != stale)
    stale.rename(tmp_path / "stale.parquet")  # out of the way of the reference only
    try:
        assert_matches_recompute(tmp_path)  # the state holds token 6's rows, not token 5's
    finally:
        (tmp_path / "stale.parquet").rename(stale)
    assert list(run.scan_photometry(run.photometry_dir(tmp_path))) == newest
