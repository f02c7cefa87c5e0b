"""Reading subband files: what a file name says."""

from __future__ import annotations

from pathlib import Path

from dsa110d.science.hdf5.reader import subband_index


def test_the_subband_index_is_two_ascii_digits_at_the_end_of_the_name() -> None:
    assert subband_index(Path("2026-03-20T06:00:04_sb07.hdf5")) == 7
    assert subband_index(Path("2026-03-20T06:00:04_sb15_incomplete.hdf5")) == 15
    # int() reads ARABIC-INDIC and fullwidth digits as 07: they are no subband index
    assert subband_index(Path("2026-03-20T06:00:04_sb\u0660\u0667.hdf5")) is None
    assert subband_index(Path("2026-03-20T06:00:04_sb\uff10\uff17.hdf5")) is None
    assert subband_index(Path("2026-03-20T06:00:04_sb07.hdf5\n")) is None
