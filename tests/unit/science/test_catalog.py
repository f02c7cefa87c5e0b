"""Reading, writing and drawing point-source catalogs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsa110d.errors import InputFileError
from dsa110d.science.catalog import random_catalog, read_catalog, write_catalog

GOOD = "id,ra_deg,dec_deg,flux_jy,name\nA,10.5,37.0,1.25,first\nB,359.9,-5,0.01,second\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cat.csv"
    path.write_text(text)
    return path


def test_reads_required_and_extra_columns(tmp_path: Path) -> None:
    cat = read_catalog(_write(tmp_path, GOOD))
    assert cat.ids == ("A", "B")
    assert np.allclose(cat.ra_deg, [10.5, 359.9])
    assert np.allclose(cat.dec_deg, [37.0, -5.0])
    assert np.allclose(cat.flux_jy, [1.25, 0.01])
    assert cat.extra == {"name": ("first", "second")}


def test_round_trips_through_write(tmp_path: Path) -> None:
    cat = random_catalog(40.0, 25, seed=3)
    path = tmp_path / "out.csv"
    write_catalog(path, cat)
    back = read_catalog(path)
    assert back.ids == cat.ids
    assert np.array_equal(back.ra_deg, cat.ra_deg)
    assert np.array_equal(back.flux_jy, cat.flux_jy)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "line 1: empty catalog"),
        ("id,ra_deg,flux_jy\nA,1,2\n", "line 1: missing column(s) dec_deg"),
        ("id,ra_deg,dec_deg,flux_jy\nA,1,2,3\nB,x,2,3\n", "line 3, column ra_deg: 'x' is not"),
        ("id,ra_deg,dec_deg,flux_jy\nA,1,95,3\n", "line 2, column dec_deg: 95.0 is outside"),
        ("id,ra_deg,dec_deg,flux_jy\nA,1,5,-3\n", "line 2, column flux_jy"),
        ("id,ra_deg,dec_deg,flux_jy\nA,1,5,nan\n", "line 2, column flux_jy: 'nan' is not finite"),
        ("id,ra_deg,dec_deg,flux_jy\nA,1,5,3\nA,2,5,3\n", "line 3, column id: 'A' repeats"),
        ("id,ra_deg,dec_deg,flux_jy\nA,1,5\n", "line 2: 3 fields"),
        ("id,ra_deg,dec_deg,flux_jy\n", "no sources"),
    ],
)
def test_bad_input_names_file_line_and_column(tmp_path: Path, text: str, fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputFileError) as info:
        read_catalog(path)
    message = str(info.value)
    assert str(path) in message
    assert fragment in message
    assert "\n" not in message


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot read catalog"):
        read_catalog(tmp_path / "absent.csv")


def test_binary_file_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "cat.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(InputFileError):
        read_catalog(path)


def test_random_catalog_is_deterministic_and_in_the_strip() -> None:
    a = random_catalog(55.0, 200, seed=7)
    b = random_catalog(55.0, 200, seed=7)
    assert a.ids == b.ids and np.array_equal(a.flux_jy, b.flux_jy)
    assert not np.array_equal(a.flux_jy, random_catalog(55.0, 200, seed=8).flux_jy)
    assert np.all(np.abs(a.dec_deg - 55.0) <= 3.0)
    assert np.all((a.flux_jy >= 0.02) & (a.flux_jy <= 5.0))
    assert np.all(np.diff(a.ra_deg) >= 0)
    assert len(set(a.ids)) == 200


def test_random_catalog_ra_range_wraps() -> None:
    cat = random_catalog(0.0, 100, seed=1, ra_range_deg=(350.0, 10.0))
    assert np.all((cat.ra_deg >= 350.0) | (cat.ra_deg <= 10.0))


def test_subset_keeps_rows_together(tmp_path: Path) -> None:
    cat = read_catalog(_write(tmp_path, GOOD))
    sub = cat.subset(np.array([False, True]))
    assert sub.ids == ("B",) and sub.extra == {"name": ("second",)} and sub.flux_jy[0] == 0.01
