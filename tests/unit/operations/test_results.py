"""What the console may read under the results directory, and the layout it shares with the
science package (spelt out in operations so that the console does not import science)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsa110d.config import Config
from dsa110d.errors import BadRequestError, NotFoundError
from dsa110d.operations import overview, records, results
from dsa110d.science import constants
from dsa110d.science.variability import results as variability_results
from dsa110d.science.variability import run as variability_run
from tests.conftest import make_config

pytestmark = pytest.mark.unit


def config_in(tmp_path: Path) -> Config:
    cfg = make_config(tmp_path)
    (cfg.paths.results_dir / "variability").mkdir(parents=True)
    return cfg


def test_the_layout_is_the_science_packages() -> None:
    assert results.PHOTOMETRY_SUBDIR == variability_run.PHOTOMETRY_SUBDIR
    assert results.VARIABILITY_SUBDIR == variability_results.RESULTS_SUBDIR
    assert results.LATEST_TABLE == variability_results.LATEST_TABLE
    assert pytest.approx(constants.FILE_DURATION_S, abs=1e-9) == overview.SET_CADENCE_SEC
    assert set(records.CANDIDATE_CLASSES) <= {"transient", "variable"}


def test_nothing_outside_the_results_directory(tmp_path: Path) -> None:
    cfg = config_in(tmp_path)
    (tmp_path / "secret.json").write_text("{}")
    for path in ("../secret.json", "/etc/passwd", "variability/../../secret.json", "a\x00b"):
        with pytest.raises(BadRequestError):
            results.result_file(cfg, path)
    outside = cfg.paths.results_dir / "variability" / "link.json"
    outside.symlink_to(tmp_path / "secret.json")
    with pytest.raises(BadRequestError):
        results.result_file(cfg, "variability/link.json")


def test_files_being_written_are_not_published(tmp_path: Path) -> None:
    cfg = config_in(tmp_path)
    variability = cfg.paths.results_dir / "variability"
    (variability / "run.candidates.json").write_text("{}")
    (variability / ".tmp-run.parquet").write_text("partial")
    (variability / "notes.txt").write_text("not a result kind")
    listed = [f.path for f in results.result_files(cfg)]
    assert listed == ["variability/run.candidates.json"]
    with pytest.raises(NotFoundError):
        results.result_file(cfg, "variability/.tmp-run.parquet")


def test_a_source_id_is_checked_before_any_file_is_read(tmp_path: Path) -> None:
    cfg = config_in(tmp_path)
    for bad in ("../x", "a b", "<b>", "x" * 200, ""):
        with pytest.raises(BadRequestError):
            results.light_curve(cfg, bad)
    with pytest.raises(NotFoundError, match="no photometry for source J1"):
        results.light_curve(cfg, "J1")
