"""Planning a set: partial sets, dropped antennas and bad input named in one line."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from casacore import tables

from dsa110d.errors import ConversionError, InputFileError
from dsa110d.science.conversion.convert import convert_set


def col(ms: Path, name: str, sub: str | None = None) -> np.ndarray:
    with tables.table(f"{ms}::{sub}" if sub else str(ms), ack=False) as t:
        return np.asarray(t.getcol(name))


def test_partial_set_has_the_missing_channels_flagged(tiny_set: list[Path], tmp_path: Path) -> None:
    full = convert_set(tiny_set, tmp_path / "full.ms")
    present = [p for p in tiny_set if "_sb03" not in p.name and "_sb15" not in p.name]
    with pytest.raises(ConversionError, match="partial"):
        convert_set(present, tmp_path / "refused.ms")
    result = convert_set(present, tmp_path / "partial.ms", partial=True)
    assert result.missing_subbands == (3, 15)
    assert result.n_channels == full.n_channels
    np.testing.assert_array_equal(
        col(tmp_path / "partial.ms", "CHAN_FREQ", "SPECTRAL_WINDOW"),
        col(tmp_path / "full.ms", "CHAN_FREQ", "SPECTRAL_WINDOW"),
    )
    nchan = full.n_channels // 16
    flags = col(tmp_path / "partial.ms", "FLAG")
    data, full_data = col(tmp_path / "partial.ms", "DATA"), col(tmp_path / "full.ms", "DATA")
    missing = np.zeros(full.n_channels, bool)
    for sb in (3, 15):  # sb00 is the top of the band, so sbNN is slot 15 - NN from the bottom
        slot = 15 - sb
        missing[slot * nchan : (slot + 1) * nchan] = True
    assert flags[:, missing].all()
    np.testing.assert_array_equal(
        flags[:, ~missing], col(tmp_path / "full.ms", "FLAG")[:, ~missing]
    )
    np.testing.assert_array_equal(data[:, ~missing], full_data[:, ~missing])


def _drop_antenna(path: Path, antenna: int) -> None:
    """Rewrite a (copied) subband file without the baselines of one antenna."""
    with h5py.File(path, "r+") as f:
        h, d = f["Header"], f["Data"]
        keep = (h["ant_1_array"][()] != antenna) & (h["ant_2_array"][()] != antenna)
        for group, names in (
            (
                h,
                (
                    "ant_1_array",
                    "ant_2_array",
                    "time_array",
                    "integration_time",
                    "uvw_array",
                    "lst_array",
                ),
            ),
            (d, ("visdata", "flags", "nsamples")),
        ):
            for name in names:
                if name in group:
                    values = group[name][()][keep]
                    del group[name]
                    group[name] = values
        h["Nblts"][()] = int(keep.sum())


def test_antennas_missing_from_one_subband_are_dropped_everywhere(
    tiny_set: list[Path], tmp_path: Path
) -> None:
    full = convert_set(tiny_set, tmp_path / "full.ms")
    gone = int(np.unique(col(tmp_path / "full.ms", "ANTENNA2"))[1])
    _drop_antenna(tiny_set[5], antenna=gone)
    result = convert_set(tiny_set, tmp_path / "dropped.ms")
    assert result.dropped_antennas == (gone,)
    assert result.n_antennas == full.n_antennas - 1
    ant1, ant2 = col(tmp_path / "dropped.ms", "ANTENNA1"), col(tmp_path / "dropped.ms", "ANTENNA2")
    assert gone not in ant1 and gone not in ant2
    full1, full2 = col(tmp_path / "full.ms", "ANTENNA1"), col(tmp_path / "full.ms", "ANTENNA2")
    keep = (full1 != gone) & (full2 != gone)
    np.testing.assert_array_equal(
        col(tmp_path / "dropped.ms", "DATA"), col(tmp_path / "full.ms", "DATA")[keep]
    )


def _edit(path: Path, key: str, value: object) -> None:
    with h5py.File(path, "r+") as f:
        del f[key]
        f[key] = value


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("missing_key", "missing header key Header/extra_keywords/phase_center_dec"),
        ("shape", "Data/flags has shape"),
        ("times", "integration times disagree"),
        ("antennas", "antennas of its baselines disagree"),
        ("overlap", "overlap"),
        ("not_hdf5", "unreadable UVH5 file"),
    ],
)
def test_bad_input_is_one_line_naming_the_file(
    tiny_set: list[Path], fault: str, message: str
) -> None:
    bad = tiny_set[4]
    with h5py.File(bad, "r") as f:
        t, a2, fl = f["Header/time_array"][()], f["Header/ant_2_array"][()], f["Data/flags"][()]
        freq = f["Header/freq_array"][()]
    if fault == "missing_key":
        with h5py.File(bad, "r+") as f:
            del f["Header/extra_keywords/phase_center_dec"]
    elif fault == "shape":
        _edit(bad, "Data/flags", fl[:, :, :-1])
    elif fault == "times":
        _edit(bad, "Header/time_array", t + 1.0 / 86400)
    elif fault == "antennas":
        _edit(bad, "Header/ant_2_array", np.roll(a2, 1))
    elif fault == "overlap":
        with h5py.File(tiny_set[3], "r") as f:
            _edit(bad, "Header/freq_array", f["Header/freq_array"][()])
        assert freq.shape
    else:
        bad.write_bytes(b"not an HDF5 file")
    before = bad.read_bytes()
    with pytest.raises(InputFileError) as info:
        convert_set(tiny_set, bad.parent / "out.ms")
    text = str(info.value)
    assert str(bad) in text and message in text and "\n" not in text
    assert bad.read_bytes() == before  # inputs are never modified
    assert not (bad.parent / "out.ms").exists()
