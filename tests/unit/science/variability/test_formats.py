"""Light curves and candidates as CSV and VOTable: read back by astropy with the same values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import votable

from dsa110d.science.variability import formats as formats
from dsa110d.science.variability.results import CANDIDATE_FIELDS


def curve() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_id": pd.Series(["J1234+5678"] * 4, dtype="string"),
            "block_id": pd.Series([f"2026-01-01T0{b}:00:00" for b in (3, 0, 2, 1)], dtype="string"),
            "mjd": [61000.125, 61000.0, 61000.0833333333, 61000.0416666667],
            "flux_jy": [0.1234567891, 0.5, -0.002, 1.25],
            "flux_err_jy": [0.001, 0.002, 0.003, 0.004],
        }
    )


def test_a_light_curve_reads_back_from_votable_with_units_and_the_same_values(
    tmp_path: Path,
) -> None:
    path = formats.write_light_curve_votable(curve(), tmp_path / "lc.vot")
    table = votable.parse_single_table(str(path)).to_table()
    want = curve().sort_values("mjd")
    assert list(table.colnames) == list(formats.LIGHT_CURVE_COLUMNS)
    assert list(table["source_id"]) == list(want["source_id"])
    assert list(table["block_id"]) == list(want["block_id"])
    for col in ("mjd", "flux_jy", "flux_err_jy"):
        np.testing.assert_array_equal(np.asarray(table[col]), want[col].to_numpy())
    assert str(table["flux_jy"].unit) == "Jy" and str(table["mjd"].unit) == "d"
    fields = {f.name: f.ucd for f in votable.parse_single_table(str(path)).fields}
    assert fields["flux_jy"] == "phot.flux.density;em.radio"


def test_a_light_curve_reads_back_from_csv(tmp_path: Path) -> None:
    path = formats.write_light_curve_csv(curve(), tmp_path / "lc.csv")
    back = pd.read_csv(path)
    want = curve().sort_values("mjd").reset_index(drop=True)
    assert list(back.columns) == list(formats.LIGHT_CURVE_COLUMNS)
    assert list(back["block_id"]) == list(want["block_id"])
    for col in ("mjd", "flux_jy", "flux_err_jy"):  # the same doubles, not just close
        np.testing.assert_array_equal(back[col].to_numpy(), want[col].to_numpy())


def test_candidates_read_back_from_votable(tmp_path: Path) -> None:
    cands = pd.DataFrame(
        {
            "source_id": ["T000", "V001"],
            "class": pd.Categorical(["transient", "variable"]),
            "ra_deg": [10.5, 200.25],
            "dec_deg": [-5.0, 33.125],
            "n": np.array([4, 40], dtype=np.int64),
            "mean_flux_jy": [0.25, 1.0],
            "v": [np.nan, 0.3],
            "variable_by": ["", "eta_v"],
        }
    )
    path = formats.write_candidates_votable(cands, CANDIDATE_FIELDS, tmp_path / "c.vot")
    table = votable.parse_single_table(str(path)).to_table()
    assert list(table["source_id"]) == ["T000", "V001"]
    assert list(table["class"]) == ["transient", "variable"]
    np.testing.assert_array_equal(np.asarray(table["ra_deg"]), [10.5, 200.25])
    np.testing.assert_array_equal(np.asarray(table["n"]), [4, 40])
    assert np.ma.is_masked(table["v"][0]) and table["v"][1] == 0.3  # NaN is VOTable's null
    assert str(table["dec_deg"].unit) == "deg"
