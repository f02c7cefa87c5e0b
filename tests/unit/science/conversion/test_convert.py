"""The converter: fidelity against pyuvdata, read-back, partial sets, dropped antennas,
atomic and idempotent publication, bad input and bounded memory."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.time import Time
from casacore import tables
from pyuvdata import UVData

from dsa110d.errors import InputFileError
from dsa110d.science.atomic import COMPLETE_MARKER, is_complete_dir
from dsa110d.science.catalog import Catalog, write_catalog
from dsa110d.science.constants import SIDEREAL_DAY_S, SPEED_OF_LIGHT_M_S
from dsa110d.science.conversion.convert import ConvertResult, convert_set
from dsa110d.science.simulation.layout import SCALES
from dsa110d.science.simulation.simulate import SimulationSpec, simulate
from dsa110d.science.simulation.visibilities import lst_for
from tests.helpers.reference import (
    ANTENNA_POSITION_TOL_M,
    DATA_RTOL,
    PHASE_CENTRE_TOL_ARCSEC,
    TIME_TOL_S,
    UVW_TOL_M,
    icrs_of_apparent_meridian,
    pyuvdata_convert,
    read_set,
)

RAD_TO_ARCSEC = 180.0 / np.pi * 3600.0
SRC = Path(__file__).resolve().parents[4] / "src"


def col(ms: Path, name: str, sub: str | None = None) -> np.ndarray:
    with tables.table(f"{ms}::{sub}" if sub else str(ms), ack=False) as t:
        return np.asarray(t.getcol(name))


def assert_data_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    scale = np.maximum(np.abs(theirs), np.abs(theirs).max() * 1e-6)
    assert np.max(np.abs(ours - theirs) / scale) <= DATA_RTOL


@pytest.mark.timeout(120)
def test_matches_pyuvdatas_own_path_column_by_column(small_set: list[Path], tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.ms", tmp_path / "theirs.ms"
    result = convert_set(small_set, ours)
    pyuvdata_convert(small_set, theirs, result.phase_ra_rad, result.phase_dec_rad)
    assert_data_close(col(ours, "DATA"), col(theirs, "DATA"))
    for name in ("FLAG", "ANTENNA1", "ANTENNA2"):
        np.testing.assert_array_equal(col(ours, name), col(theirs, name))
    assert np.max(np.abs(col(ours, "UVW") - col(theirs, "UVW"))) <= UVW_TOL_M
    assert np.max(np.abs(col(ours, "TIME") - col(theirs, "TIME"))) <= TIME_TOL_S
    np.testing.assert_array_equal(
        col(ours, "CHAN_FREQ", "SPECTRAL_WINDOW"), col(theirs, "CHAN_FREQ", "SPECTRAL_WINDOW")
    )
    antpos = col(ours, "POSITION", "ANTENNA") - col(theirs, "POSITION", "ANTENNA")
    assert np.max(np.abs(antpos)) <= ANTENNA_POSITION_TOL_M
    centre = col(ours, "PHASE_DIR", "FIELD") - col(theirs, "PHASE_DIR", "FIELD")
    assert np.max(np.abs(centre)) * RAD_TO_ARCSEC <= PHASE_CENTRE_TOL_ARCSEC
    np.testing.assert_array_equal(col(ours, "WEIGHT"), col(theirs, "WEIGHT"))


def test_has_the_standard_subtables_and_one_ascending_window(
    tiny_set: list[Path], tmp_path: Path
) -> None:
    ms = tmp_path / "set.ms"
    result = convert_set(tiny_set, ms)
    freqs = col(ms, "CHAN_FREQ", "SPECTRAL_WINDOW")
    assert freqs.shape == (1, result.n_channels)
    assert np.all(np.diff(freqs[0]) > 0)
    assert set(col(ms, "DISH_DIAMETER", "ANTENNA")) == {4.65}
    assert col(ms, "TELESCOPE_NAME", "OBSERVATION")[0] == "OVRO_MMA"
    assert col(ms, "CORR_TYPE", "POLARIZATION").tolist() == [[9, 12]]  # XX, YY
    for sub in ("FEED", "DATA_DESCRIPTION", "HISTORY", "FIELD"):
        with tables.table(f"{ms}::{sub}", ack=False) as t:
            assert t.nrows() >= 1
    assert col(ms, "UVW").dtype == np.float64
    assert col(ms, "EXPOSURE").shape == (result.n_rows,)
    with tables.table(str(ms), ack=False) as t:
        assert t.getdminfo("DATA")["TYPE"] == "TiledColumnStMan"
    assert (ms / COMPLETE_MARKER).is_file()


@pytest.mark.timeout(120)
def test_reads_back_with_pyuvdata_as_the_uvh5_input(tiny_set: list[Path], tmp_path: Path) -> None:
    ms = tmp_path / "set.ms"
    convert_set(tiny_set, ms)
    back = UVData()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyuvdata's notes on the MS's history/telescope
        back.read(str(ms))
    source = read_set(tiny_set)
    source.reorder_freqs(channel_order="freq", run_check=False)
    np.testing.assert_array_equal(back.freq_array, source.freq_array)
    np.testing.assert_array_equal(back.ant_1_array, source.ant_1_array)
    np.testing.assert_array_equal(back.flag_array, source.flag_array)
    np.testing.assert_array_equal(back.nsample_array, source.nsample_array)
    assert np.max(np.abs(back.time_array - source.time_array)) * 86400 <= TIME_TOL_S
    # Undo our phasing with the MS's own w: the drift-scan visibilities come back.
    w_turns = back.uvw_array[:, 2:3] * back.freq_array[None, :] / SPEED_OF_LIGHT_M_S
    drift = back.data_array * np.exp(2j * np.pi * w_turns)[:, :, None]
    assert_data_close(drift, source.data_array)


def test_an_existing_complete_ms_is_not_rewritten(tiny_set: list[Path], tmp_path: Path) -> None:
    ms = tmp_path / "set.ms"
    first = convert_set(tiny_set, ms)
    stamp = (ms / "table.f0").stat().st_mtime_ns
    again = convert_set(tiny_set, ms)
    assert again.reused and not first.reused
    assert (ms / "table.f0").stat().st_mtime_ns == stamp
    assert (again.n_rows, again.n_channels, again.n_times) == (
        first.n_rows,
        first.n_channels,
        first.n_times,
    )
    assert again.phase_ra_rad == pytest.approx(first.phase_ra_rad, abs=1e-12)


def test_a_half_written_ms_is_replaced(tiny_set: list[Path], tmp_path: Path) -> None:
    ms = tmp_path / "set.ms"
    ms.mkdir()
    (ms / "table.dat").write_text("left by a crash")
    result = convert_set(tiny_set, ms)
    assert not result.reused and is_complete_dir(ms)
    assert col(ms, "DATA").shape[0] == result.n_rows
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def _run_limited(files: list[Path], out: Path, max_bytes: int) -> subprocess.CompletedProcess[str]:
    """Convert in a child whose files may not grow beyond ``max_bytes`` (a full disk)."""
    code = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from dsa110d.errors import ConversionError
        from dsa110d.science.conversion.convert import convert_set
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({max_bytes}, {max_bytes}))
        try:
            convert_set([Path(p) for p in {[str(p) for p in files]!r}], Path({str(out)!r}))
        except ConversionError as exc:
            print(exc)
            sys.exit(3)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=100
    )


@pytest.mark.timeout(120)
def test_a_full_disk_leaves_nothing_and_says_so(tiny_set: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out" / "set.ms"
    proc = _run_limited(tiny_set, out, max_bytes=20_000)  # less than the MS's DATA
    assert proc.returncode == 3, proc.stderr
    assert str(out) in proc.stdout and len(proc.stdout.strip().splitlines()) == 1
    assert list(out.parent.iterdir()) == []


def test_result_is_json_friendly(tiny_set: list[Path], tmp_path: Path) -> None:
    result = convert_set(tiny_set, tmp_path / "set.ms")
    record = result.to_dict()
    assert record["ms"] == str(tmp_path / "set.ms") and record["n_rows"] == result.n_rows
    assert isinstance(result, ConvertResult) and result.subbands == tuple(range(16))


def _conjugate_some_baselines(files: list[Path]) -> None:
    """Store half the cross-correlations as ant2-ant1 (conjugated), in every subband."""
    for path in files:
        with h5py.File(path, "r+") as f:
            h, d = f["Header"], f["Data"]
            a1, a2 = h["ant_1_array"][()], h["ant_2_array"][()]
            flip = (a1 + a2) % 2 == 1  # the same baselines at every time
            h["ant_1_array"][...] = np.where(flip, a2, a1)
            h["ant_2_array"][...] = np.where(flip, a1, a2)
            uvw = h["uvw_array"][()]
            uvw[flip] *= -1
            h["uvw_array"][...] = uvw
            vis = d["visdata"][()]
            vis[flip] = np.conjugate(vis[flip])
            d["visdata"][...] = vis


@pytest.mark.timeout(120)
def test_mixed_conjugation_is_written_as_pyuvdata_does(
    tiny_set: list[Path], tmp_path: Path
) -> None:
    _conjugate_some_baselines(tiny_set)
    ours, theirs = tmp_path / "ours.ms", tmp_path / "theirs.ms"
    result = convert_set(tiny_set, ours)
    pyuvdata_convert(tiny_set, theirs, result.phase_ra_rad, result.phase_dec_rad)
    assert np.all(col(ours, "ANTENNA1") <= col(ours, "ANTENNA2"))
    for name in ("ANTENNA1", "ANTENNA2", "FLAG"):
        np.testing.assert_array_equal(col(ours, name), col(theirs, name))
    assert np.max(np.abs(col(ours, "UVW") - col(theirs, "UVW"))) <= UVW_TOL_M
    assert_data_close(col(ours, "DATA"), col(theirs, "DATA"))


def _corrupt_visibilities(path: Path) -> None:
    """Store visdata compressed and spoil its first chunk: the header still reads fine."""
    with h5py.File(path, "r+") as f:
        vis = f["Data/visdata"][()]
        del f["Data/visdata"]
        f.create_dataset("Data/visdata", data=vis, chunks=vis.shape, compression="gzip")
        offset = f["Data/visdata"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as raw:
        raw.seek(offset + 16)
        raw.write(b"\xff" * 64)


@pytest.mark.parametrize("isolate", [True, False])
def test_unreadable_visibilities_name_the_file(
    tiny_set: list[Path], tmp_path: Path, isolate: bool
) -> None:
    _corrupt_visibilities(tiny_set[6])
    out = tmp_path / "set.ms"
    with pytest.raises(InputFileError) as info:
        convert_set(tiny_set, out, isolate=isolate)
    assert str(tiny_set[6]) in str(info.value) and "\n" not in str(info.value)
    assert not out.exists() and [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


OFF_ZENITH_DEC_DEG = 60.0
"""A pointing 23 deg from the zenith: the drift data's w is up to ~500 m on the outriggers."""
OFF_ZENITH_START = datetime(2026, 3, 20, 7, 0, 0, tzinfo=UTC)
CENTRE_PHASE_TOL_RAD = 0.1
"""A source at the phase centre must come out real to this: noise, float32 storage, and the
source placed by astropy's frames, ~0.1 arcsec from pyuvdata's (0.04 rad on the ~2.5 km
baselines; the old phasing from w = 0 winds by hundreds of turns)."""


def test_off_zenith_a_source_at_the_phase_centre_comes_out_real(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    """The files are fringe-stopped on the meridian at the pointing dec, not the zenith: the
    converter must phase from there (w_new - w_drift), or off the zenith the phases of a
    source at the phase centre wind by hundreds of turns and the source vanishes."""
    scale = SCALES["tiny"]
    mid_jd = Time(OFF_ZENITH_START).jd + scale.integrations * scale.integration_time_s / 2 / 86400
    ra, dec = icrs_of_apparent_meridian(mid_jd, OFF_ZENITH_DEC_DEG)  # the MS phase centre
    catalog = tmp_path / "one.csv"
    write_catalog(catalog, Catalog(("C",), np.array([ra]), np.array([dec]), np.array([20.0])))
    spec = tiny_spec(
        tmp_path / "in", sets=1, n_subbands=16, start=OFF_ZENITH_START, catalog=catalog,
        dec_deg=OFF_ZENITH_DEC_DEG, sefd_jy=1.0, variable_fraction=0.0,
    )  # fmt: skip
    ms = tmp_path / "set.ms"
    result = convert_set(simulate(spec).files, ms)
    offset = math.hypot(
        (result.phase_ra_rad - math.radians(ra)) * math.cos(math.radians(dec)),
        result.phase_dec_rad - math.radians(dec),
    )
    assert offset * RAD_TO_ARCSEC < APPARENT_FRAME_TOL_ARCSEC
    cross = col(ms, "ANTENNA1") != col(ms, "ANTENNA2")
    data = col(ms, "DATA")[cross]
    assert np.max(np.abs(np.angle(data))) < CENTRE_PHASE_TOL_RAD
    assert np.all(np.abs(data) > 0.9 * 20.0 * 0.5)  # the source, through the beam


APPARENT_FRAME_TOL_ARCSEC = 2.0
"""astropy's geocentric TETE against pyuvdata's topocentric apparent frame: diurnal aberration
(~0.3 arcsec) and the two libraries' nutation models."""
OLD_CENTRE_MIN_OFFSET_DEG = 0.2
"""The apparent meridian read as ICRS (the old FIELD entry) is ~0.4 deg off at dec 60 in 2026."""


def test_the_field_states_the_apparent_meridian_in_icrs(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    """FIELD's PHASE_DIR (read as J2000 by CASA and wsclean) is where the dishes point at
    mid-time; the old entry (apparent LST/dec labelled ICRS) is ~0.4 deg off: the control."""
    spec = tiny_spec(tmp_path / "in", sets=1, start=OFF_ZENITH_START, dec_deg=OFF_ZENITH_DEC_DEG)
    ms = tmp_path / "set.ms"
    convert_set(simulate(spec).files, ms)
    times = np.unique(col(ms, "TIME"))
    mid_jd = Time(0.5 * (times[0] + times[-1]) / 86400, format="mjd", scale="utc").jd
    ra, dec = icrs_of_apparent_meridian(mid_jd, OFF_ZENITH_DEC_DEG)
    field = SkyCoord(*col(ms, "PHASE_DIR", "FIELD")[0, 0], unit="rad")
    assert field.separation(SkyCoord(ra, dec, unit="deg")).arcsec < APPARENT_FRAME_TOL_ARCSEC
    old_ra = float(lst_for(np.array([mid_jd]))[0])
    old = SkyCoord(old_ra, math.radians(OFF_ZENITH_DEC_DEG), unit="rad")
    assert old.separation(SkyCoord(ra, dec, unit="deg")).deg > OLD_CENTRE_MIN_OFFSET_DEG
    # POINTING: every antenna at every integration, the meridian moving at the sidereal rate
    # and through the phase centre at mid-time.
    n_ant = int(col(ms, "ANTENNA_ID", "POINTING").max()) + 1
    assert col(ms, "ANTENNA_ID", "POINTING").size == n_ant * times.size
    direction = col(ms, "DIRECTION", "POINTING")[:, :, 0]
    point_times = col(ms, "TIME", "POINTING")
    np.testing.assert_allclose(np.unique(point_times), times)
    first = point_times == times[0]
    last = point_times == times[-1]
    sweep = direction[last][0] - direction[first][0]
    rate = np.radians(360.0) / SIDEREAL_DAY_S
    assert math.isclose(sweep[0], rate * (times[-1] - times[0]), rel_tol=0.02)
    middle = 0.5 * (direction[last][0] + direction[first][0])
    assert SkyCoord(*middle, unit="rad").separation(field).arcsec < APPARENT_FRAME_TOL_ARCSEC
