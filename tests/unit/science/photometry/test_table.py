"""The one photometry reader: the processor's Parquet as written -> the frame the metrics need,
and the same numbers from a direct API call as from the analyzer's run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsa110d.errors import VariabilityInputError
from dsa110d.science.photometry import stage as photometry
from dsa110d.science.photometry import table as photometry_table
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability import run as run
from dsa110d.science.variability.state import METRIC_RTOL
from tests.integration.services.seed import PARTIAL, block_rows

N_BLOCKS = 8
THRESHOLDS = {"min_data_points": 3, "variability_threshold": 0.1, "p_threshold": 1e-3}


def processor_files(results: Path) -> list[Path]:
    """Blocks written with the processor's own writer, in the processor's schema."""
    paths = []
    for b in range(N_BLOCKS):
        frame = block_rows(b)
        assert list(frame.columns) == list(photometry.SCHEMA)
        path = results / "photometry" / f"{frame['block_id'].iloc[0]}.parquet"
        photometry.write_photometry(frame, path)
        paths.append(path)
    return paths


def test_the_processors_files_are_read_with_flag_codes_and_their_names(tmp_path: Path) -> None:
    files = processor_files(tmp_path)
    raw = pd.read_parquet(files[PARTIAL[1]])
    assert pd.api.types.is_string_dtype(raw["flags"])  # as the processor writes them
    rows = photometry_table.read_tables(files)
    assert rows["flags"].dtype == np.int64 and rows["version"].dtype == np.int64
    assert rows["mjd"].dtype == np.float64 and rows["flux_jy"].dtype == np.float64
    unusable = rows[rows["flags"] != 0]
    # the one partial_transit row; block 6's missing_chunks rows stay usable
    assert list(zip(unusable["source_id"], unusable["flag_names"], strict=True)) == [
        (PARTIAL[0], "partial_transit")
    ]
    assert set(rows.loc[rows["block_id"] == "2026-01-01T06:00:00", "flags"]) == {0}
    assert photometry_table.photometry_files(tmp_path) == sorted(files)


def test_recompute_on_the_processors_parquet_gives_the_services_numbers(tmp_path: Path) -> None:
    files = processor_files(tmp_path)
    run._CACHE.clear()
    run.analyze(str(tmp_path), THRESHOLDS, "2026-11-26T12:00:00+00:00", max_light_curves=0)
    service = pd.read_parquet(tmp_path / "variability" / "latest.parquet")
    # the API trap of issue 19: the files as read, passed straight to recompute
    as_written = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    direct = var.metrics_frame(var.recompute(as_written), run.thresholds_from(THRESHOLDS))
    assert int(direct["n"].sum()) == N_BLOCKS * len(block_rows(0)) - 1  # all but one row
    assert [str(s) for s in direct["source_id"]] == [str(s) for s in service["source_id"]]
    assert list(direct["class"].astype(str)) == list(service["class"].astype(str))
    for col in ("n", "mean_flux_jy", "wmean_flux_jy", "v", "eta", "p_constant", "vs", "m"):
        np.testing.assert_allclose(direct[col], service[col], rtol=METRIC_RTOL, equal_nan=True)
    typed = photometry_table.read_tables(files)
    via_reader = var.metrics_frame(var.recompute(typed), run.thresholds_from(THRESHOLDS))
    pd.testing.assert_frame_equal(via_reader, direct)


def test_a_file_without_a_needed_column_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "photometry" / "x.parquet"
    photometry.write_photometry(block_rows(0).drop(columns=["flux_err_jy"]), path)
    with pytest.raises(VariabilityInputError, match=r"x\.parquet: missing column\(s\) flux_err_jy"):
        photometry_table.read_table(path)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [("flux_jy", "bright", "column flux_jy is not numeric"),
     ("version", "v2", "column version is not an integer")],
)  # fmt: skip
def test_a_column_of_the_wrong_type_is_named(column: str, value: str, message: str) -> None:
    rows = block_rows(0).astype({column: object})
    rows.loc[rows.index[0], column] = value
    with pytest.raises(VariabilityInputError, match=f"^blk.parquet: {message}$"):
        photometry_table.typed(rows, where="blk.parquet")
