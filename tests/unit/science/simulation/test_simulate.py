"""The simulator writes subband sets laid out as the real correlator's (DESIGN section 2)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.time import Time
from pyuvdata import UVData

from dsa110d.science import constants as k
from dsa110d.science.beam import beam_model, primary_beam
from dsa110d.science.catalog import Catalog, read_catalog, write_catalog
from dsa110d.science.hdf5.probe import probe_subband
from dsa110d.science.hdf5.subbands import SUBBAND_NAME, parse_subband_name
from dsa110d.science.simulation.layout import SCALES, subband_frequencies_hz
from dsa110d.science.simulation.simulate import (
    GENERATED_RA_MARGIN_DEG,
    MAX_NAME_JITTER_S,
    SimulationResult,
    SimulationSpec,
    simulate,
)
from dsa110d.science.simulation.visibilities import lst_for, noise_sigma_jy

FREQ_TOL_HZ = 1e-3
"""Frequencies are computed, not measured: agree to a millihertz."""
TIME_TOL_S = 1e-3
"""Times agree to a millisecond (JD float64 resolution is ~20 us)."""
TINY_SETS = 2
TINY_SUBBANDS = 4
"""The session fixture ``tiny_run``'s size (tests/unit/science/conftest.py)."""
TINY_START = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
"""Its start."""


@pytest.fixture(autouse=True)
def _same_start_as_the_fixture(tiny_start: datetime) -> None:
    assert tiny_start == TINY_START


def _by_set(result: SimulationResult) -> dict[str, list[Path]]:
    truth = json.loads(result.truth_path.read_text())  # type: ignore[union-attr]
    out = result.files[0].parent
    return {s["set_id"]: [out / f for f in s["files"]] for s in truth["sets"]}


def test_writes_every_subband_of_every_set_under_its_final_name(
    tiny_run: SimulationResult,
) -> None:
    out = tiny_run.files[0].parent
    names = sorted(p.name for p in out.iterdir() if p.suffix == ".hdf5")
    assert len(names) == TINY_SETS * TINY_SUBBANDS
    assert all(SUBBAND_NAME.fullmatch(n) for n in names)
    assert not list(out.glob("*_incomplete.hdf5"))
    for files in _by_set(tiny_run).values():
        assert sorted(parse_subband_name(p).subband for p in files) == list(range(TINY_SUBBANDS))  # type: ignore[union-attr]


def test_subbands_of_a_set_share_time_array_0_bit_for_bit_but_not_their_names(
    tiny_run: SimulationResult,
) -> None:
    first_times = []
    for files in _by_set(tiny_run).values():
        keys = set()
        stamps = []
        for path in files:
            with h5py.File(path, "r") as f:
                keys.add(f["Header/time_array"][0].tobytes())
            stamps.append(parse_subband_name(path).timestamp)  # type: ignore[union-attr]
        assert len(keys) == 1
        first_times.append(keys.pop())
        assert (max(stamps) - min(stamps)).total_seconds() <= MAX_NAME_JITTER_S
    assert len(set(first_times)) == TINY_SETS


def test_jitter_makes_name_timestamps_differ_somewhere(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    result = simulate(tiny_spec(tmp_path, sets=3, n_subbands=16))
    stamps = {parse_subband_name(p).timestamp for p in result.files}  # type: ignore[union-attr]
    assert len(stamps) > 3


def test_header_layout_matches_the_real_files(tiny_run: SimulationResult) -> None:
    scale = SCALES["tiny"]
    path = next(p for p in tiny_run.files if p.name.endswith("_sb00.hdf5"))
    with h5py.File(path, "r") as f:
        h, d = f["Header"], f["Data"]
        n_bls = scale.n_baselines
        n_blts = n_bls * scale.integrations
        assert h["telescope_name"][()] == b"OVRO_MMA"
        assert h["phase_type"][()] == b"drift"
        assert math.isclose(h["extra_keywords/phase_center_dec"][()], math.radians(k.OVRO_LAT_DEG))
        assert h["Nblts"][()] == n_blts and h["Nbls"][()] == n_bls
        assert h["Nants_telescope"][()] == k.N_ANTENNAS_TELESCOPE
        assert h["Nants_data"][()] == scale.n_antennas
        names = [n.decode() for n in h["antenna_names"][()]]
        assert names == [str(i) for i in range(1, 118)]
        assert list(h["polarization_array"][()]) == [-5, -6]
        assert h["uvw_array"].dtype == np.float32
        ant1, ant2 = h["ant_1_array"][()], h["ant_2_array"][()]
        assert np.sum(ant1 == ant2) == scale.n_antennas * scale.integrations  # autos
        assert h["freq_array"].shape == (1, scale.channels_per_subband)
        assert np.all(np.diff(h["freq_array"][0]) < 0)  # channels descend
        assert np.allclose(h["integration_time"][()], scale.integration_time_s)
        assert np.allclose(
            np.diff(np.unique(h["time_array"][()])) * 86400,
            scale.integration_time_s,
            atol=TIME_TOL_S,
        )
        shape = (n_blts, 1, scale.channels_per_subband, 2)
        assert d["visdata"].shape == shape and d["visdata"].dtype == np.complex64
        assert d["flags"].shape == shape and d["flags"].dtype == np.bool_
        assert d["nsamples"].shape == shape and d["nsamples"].dtype == np.float32


def test_sb00_is_highest_and_subbands_tile_the_band_downwards(tiny_run: SimulationResult) -> None:
    files = next(iter(_by_set(tiny_run).values()))
    tops = []
    for path in sorted(files, key=lambda p: parse_subband_name(p).subband):  # type: ignore[union-attr]
        with h5py.File(path, "r") as f:
            tops.append(f["Header/freq_array"][0])
    stacked = np.concatenate(tops)
    assert np.all(np.diff(stacked) < 0)
    width = SCALES["tiny"].channel_width_hz
    assert np.allclose(-np.diff(stacked), width, atol=FREQ_TOL_HZ)
    top_fine = k.SB00_TOP_FREQ_HZ
    assert abs(stacked[0] - (top_fine - (width - k.CHANNEL_WIDTH_HZ) / 2)) < FREQ_TOL_HZ


@pytest.mark.timeout(180)
def test_real_scale_subband_has_the_instrument_sizes(tmp_path: Path) -> None:
    result = simulate(
        SimulationSpec(out=tmp_path, start=TINY_START, sets=1, scale="real", n_subbands=1)
    )
    (path,) = result.files
    probe = probe_subband(path)
    assert probe.n_blts == k.N_BASELINES_DATA * k.INTEGRATIONS_PER_FILE
    assert probe.n_freqs == k.CHANNELS_PER_SUBBAND
    assert probe.n_ants_data == k.N_ANTENNAS_DATA
    assert abs(probe.freq_max_hz - k.SB00_TOP_FREQ_HZ) < FREQ_TOL_HZ
    assert abs(probe.integration_s - k.INTEGRATION_TIME_S) < TIME_TOL_S
    assert abs(path.stat().st_size - k.SUBBAND_FILE_BYTES_REAL) < 0.1 * k.SUBBAND_FILE_BYTES_REAL
    uv = _read_with_pyuvdata(path)
    assert uv.Nbls == k.N_BASELINES_DATA and uv.Ntimes == k.INTEGRATIONS_PER_FILE
    assert np.allclose(uv.channel_width, k.CHANNEL_WIDTH_HZ)
    assert uv.telescope.name == k.TELESCOPE_NAME
    assert np.allclose(uv.telescope.antenna_diameters, k.DISH_DIAMETER_M)
    lat, lon, alt = uv.telescope.location_lat_lon_alt_degrees
    assert abs(lat - k.OVRO_LAT_DEG) < 1e-9 and abs(lon - k.OVRO_LON_DEG) < 1e-9
    assert abs(alt - k.OVRO_HEIGHT_M) < 1e-3


def _read_with_pyuvdata(path: Path) -> UVData:
    """How the real files read: float32 uvw (a fact of the correlator) fails pyuvdata's type
    check, so read unchecked, cast, then run the full check."""
    uv = UVData.from_file(str(path), file_type="uvh5", run_check=False)
    uv.uvw_array = uv.uvw_array.astype(np.float64)
    uv.check()
    return uv


def test_pyuvdata_reads_the_files_and_its_checks_pass(tiny_run: SimulationResult) -> None:
    for path in tiny_run.files:
        uv = _read_with_pyuvdata(path)
        assert uv.Npols == 2 and list(uv.polarization_array) == [-5, -6]
        assert uv.Nants_data == SCALES["tiny"].n_antennas
        assert uv.phase_center_catalog[0]["cat_type"] == "unprojected"  # "drift"


def test_pyuvdata_default_read_rejects_float32_uvw_like_the_real_files(
    tiny_run: SimulationResult,
) -> None:
    with pytest.raises(ValueError, match="_uvw_array is not the appropriate type"):
        UVData.from_file(str(tiny_run.files[0]), file_type="uvh5")


def test_uvw_off_zenith_is_for_the_meridian_at_the_pointing_dec(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    dec = 60.0
    result = simulate(tiny_spec(tmp_path, sets=1, n_subbands=1, dec_deg=dec))
    with h5py.File(result.files[0], "r") as f:
        uvw = f["Header/uvw_array"][()].astype(np.float64)
        a1, a2 = f["Header/ant_1_array"][()], f["Header/ant_2_array"][()]
        pos = f["Header/antenna_positions"][()]
    # At hour angle 0 the phase centre lies in the meridian, tilted by (dec - lat) from the
    # zenith: u is the east component, v and w mix north and up by that tilt.
    from pyuvdata.utils import ENU_from_ECEF

    enu = ENU_from_ECEF(
        pos + _ecef0(), latitude=k.OVRO_LAT_RAD, longitude=k.OVRO_LON_RAD, altitude=k.OVRO_HEIGHT_M
    )
    b = enu[a2] - enu[a1]
    tilt = math.radians(dec) - k.OVRO_LAT_RAD
    expect_u = b[:, 0]
    expect_v = b[:, 1] * math.cos(tilt) - b[:, 2] * math.sin(tilt)
    expect_w = b[:, 1] * math.sin(tilt) + b[:, 2] * math.cos(tilt)
    assert np.allclose(uvw[:, 0], expect_u, atol=0.05)
    assert np.allclose(uvw[:, 1], expect_v, atol=0.05)
    assert np.allclose(uvw[:, 2], expect_w, atol=0.05)


def _ecef0() -> np.ndarray:
    from dsa110d.science.simulation.layout import telescope_ecef_m

    return telescope_ecef_m()


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda p: p.name):
        with h5py.File(p, "r") as f:
            h.update(f["Data/visdata"][()].tobytes())
            h.update(f["Header/uvw_array"][()].tobytes())
    return h.hexdigest()


def test_same_seed_same_files_other_seed_other_noise(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path, tiny_run: SimulationResult
) -> None:
    again = simulate(tiny_spec(tmp_path / "a"))
    assert [p.name for p in again.files] == [p.name for p in tiny_run.files]
    assert _digest(again.files) == _digest(tiny_run.files)
    assert again.truth_path.read_text() == tiny_run.truth_path.read_text()  # type: ignore[union-attr]
    other = simulate(tiny_spec(tmp_path / "b", seed=2))
    assert _digest(other.files) != _digest(tiny_run.files)


def test_truth_file_records_catalog_sets_and_fluxes(tiny_run: SimulationResult) -> None:
    truth = json.loads(tiny_run.truth_path.read_text())  # type: ignore[union-attr]
    assert tiny_run.truth_path == tiny_run.files[0].parent / "truth.json"
    assert [s["set_id"] for s in truth["sets"]] == tiny_run.set_ids
    for s in truth["sets"]:
        ids = {probe_subband(tiny_run.files[0].parent / f).set_id for f in s["files"]}
        assert ids == {s["set_id"]}
    sources = truth["sources"]
    assert len(sources) > 20
    assert all(len(s["flux_per_set_jy"]) == TINY_SETS for s in sources)
    n_var = sum(s["variable"] for s in sources)
    assert n_var == round(0.3 * len(sources))
    kinds = {s["variability"]["kind"] for s in sources if s["variable"]}
    assert kinds == {"flare", "step", "sinusoid"}
    steady = [s for s in sources if not s["variable"]]
    assert all(f == s["flux_jy"] for s in steady for f in s["flux_per_set_jy"])


def test_generated_sky_covers_the_observed_sidereal_range(tiny_run: SimulationResult) -> None:
    truth = json.loads(tiny_run.truth_path.read_text())  # type: ignore[union-attr]
    lst0 = math.degrees(float(lst_for(np.array([Time(TINY_START).jd]))[0]))
    span = TINY_SETS * k.FILE_DURATION_S / 240.0  # degrees of LST
    ra = np.array([s["ra_deg"] for s in truth["sources"]])
    dec = np.array([s["dec_deg"] for s in truth["sources"]])
    ahead = (ra - (lst0 - GENERATED_RA_MARGIN_DEG)) % 360.0
    assert np.all(ahead <= span + 2 * GENERATED_RA_MARGIN_DEG + 0.1)
    assert np.all(np.abs(dec - k.OVRO_LAT_DEG) <= 3.0)
    # Sources in the beam at mid-run, so the run sees a sky.
    mid = (lst0 + span / 2) % 360.0
    near = np.abs((ra - mid + 180.0) % 360.0 - 180.0) < 2.0
    assert near.any()


def test_set_id_is_the_set_start_second(tiny_run: SimulationResult) -> None:
    first = datetime.fromisoformat(tiny_run.set_ids[0])
    assert first == TINY_START.replace(tzinfo=None)
    second = datetime.fromisoformat(tiny_run.set_ids[1])
    assert abs((second - first) - timedelta(seconds=k.FILE_DURATION_S)) <= timedelta(seconds=1)


def test_variable_sources_change_set_to_set_and_day_to_day(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    result = simulate(
        tiny_spec(tmp_path, sets=3, days=3, n_subbands=1, variable_fraction=0.5, n_sources=60)
    )
    truth = json.loads(result.truth_path.read_text())  # type: ignore[union-attr]
    assert truth["days"] == 3 and len(truth["sets"]) == 9
    starts = [datetime.fromisoformat(s["start"]) for s in truth["sets"]]
    assert abs((starts[3] - starts[0]).total_seconds() - k.SIDEREAL_DAY_S) < 1e-3
    changed = {"flare": 0, "step": 0, "sinusoid": 0}
    for s in truth["sources"]:
        flux = np.array(s["flux_per_set_jy"])
        if s["variable"] and np.ptp(flux) > 1e-6 * s["flux_jy"]:
            changed[s["variability"]["kind"]] += 1
    assert changed["step"] > 0 and changed["sinusoid"] > 0
    # Sinusoids are slow: little change within a day, more between days.
    for s in truth["sources"]:
        if s["variable"] and s["variability"]["kind"] == "sinusoid":
            f = np.array(s["flux_per_set_jy"]).reshape(3, 3)
            assert np.ptp(f[0]) < np.ptp(f[:, 0]) + 1e-9


def test_flares_peak_near_a_transit(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    result = simulate(
        tiny_spec(tmp_path, sets=1, n_subbands=1, variable_fraction=1.0, n_sources=30)
    )
    truth = json.loads(result.truth_path.read_text())  # type: ignore[union-attr]
    flares = [s for s in truth["sources"] if s["variability"]["kind"] == "flare"]
    assert flares
    for s in flares:
        peak = Time(s["variability"]["peak_mjd"], format="mjd")
        lst_peak = float(lst_for(np.array([peak.jd]))[0])
        hour_angle = (lst_peak - math.radians(s["ra_deg"]) + math.pi) % (2 * math.pi) - math.pi
        # Peak within one flare width (<= 1800 s, 15 s of time per arcmin of hour angle) of
        # transit, plus a degree of precession between ICRS and the apparent equator.
        assert abs(hour_angle) < math.radians(1800 / 240 + 1)


def test_noise_and_autocorrelations_match_the_stated_sefd(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    write_catalog(empty, Catalog(("none",), np.array([0.0]), np.array([-80.0]), np.array([0.0])))
    result = simulate(
        SimulationSpec(
            out=tmp_path / "o", start=TINY_START, sets=1, scale="small", n_subbands=1, catalog=empty
        )
    )
    scale = SCALES["small"]
    with h5py.File(result.files[0], "r") as f:
        vis = f["Data/visdata"][()]
        auto = f["Header/ant_1_array"][()] == f["Header/ant_2_array"][()]
    sigma = noise_sigma_jy(scale.channel_width_hz, scale.integration_time_s, k.SEFD_JY)
    cross = vis[~auto]
    assert abs(cross.real.std() / sigma - 1) < 0.02 and abs(cross.imag.std() / sigma - 1) < 0.02
    assert abs(cross.real.mean()) < 5 * sigma / math.sqrt(cross.size)
    autos = vis[auto]
    assert np.all(autos.imag == 0)
    assert abs(autos.real.mean() - k.SEFD_JY) < 5 * math.sqrt(2) * sigma / math.sqrt(autos.size)


OTHER_BEAM = {"tapered": "airy", "airy": "tapered"}


@pytest.mark.parametrize("beam", ["tapered", "airy"])
def test_a_source_appears_with_its_flux_through_the_beam(tmp_path: Path, beam: str) -> None:
    """Phase the drift data to the source with pyuvdata (independent astrometry) and compare
    the mean real visibility with flux x beam at the source's zenith angle from astropy,
    for the truth beam chosen (``SimulationSpec.beam``; at 1.5 deg off axis the two models
    differ by 6 %, 0.5 Jy, more than twice the tolerance: the other model must not fit).
    Zenith pointing only: pyuvdata takes drift data as not fringe-stopped (w = 0), which is
    true of these files only there (off the zenith: test_convert's off-zenith test)."""
    scale = SCALES["small"]
    mid = Time(TINY_START) + 3 * scale.integration_time_s * u.s
    lst_mid = math.degrees(float(lst_for(np.array([mid.jd]))[0]))
    ra, dec, flux = lst_mid - 0.3, k.OVRO_LAT_DEG + 1.5, 20.0
    cat = tmp_path / "one.csv"
    write_catalog(cat, Catalog(("BRIGHT",), np.array([ra]), np.array([dec]), np.array([flux])))
    result = simulate(
        SimulationSpec(
            out=tmp_path / "o",
            start=TINY_START,
            sets=1,
            scale="small",
            n_subbands=1,
            catalog=cat,
            beam=beam,
        )
    )
    uv = _read_with_pyuvdata(result.files[0])
    uv.phase(ra=math.radians(ra), dec=math.radians(dec), epoch="J2000", cat_name="BRIGHT")
    site = EarthLocation.from_geodetic(
        k.OVRO_LON_DEG * u.deg, k.OVRO_LAT_DEG * u.deg, k.OVRO_HEIGHT_M * u.m
    )
    freqs = subband_frequencies_hz(scale, 0)
    cross = uv.ant_1_array != uv.ant_2_array
    for jd in np.unique(uv.time_array):
        rows = cross & (uv.time_array == jd)
        mean = uv.data_array[rows].mean(axis=(0, 2))  # per channel
        altaz = SkyCoord(ra * u.deg, dec * u.deg).transform_to(
            AltAz(obstime=Time(jd, format="jd"), location=site)
        )
        zenith_angle = math.radians(90.0 - altaz.alt.deg)
        expected = flux * primary_beam(zenith_angle, freqs, model=beam_model(beam))
        other = flux * primary_beam(zenith_angle, freqs, model=beam_model(OTHER_BEAM[beam]))
        sigma = noise_sigma_jy(scale.channel_width_hz, scale.integration_time_s, k.SEFD_JY)
        noise = 5 * sigma / math.sqrt(rows.sum() * 2)
        assert np.allclose(mean.real, expected, atol=noise + 0.01 * flux)
        assert not np.allclose(mean.real, other, atol=noise + 0.01 * flux)
        assert np.allclose(mean.imag, 0.0, atol=noise + 0.01 * flux)


def test_live_mode_lands_each_set_through_incomplete_names(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    slept: list[float] = []
    result = simulate(
        tiny_spec(tmp_path, live=True, speed=10.0, sets=2, n_subbands=3), sleep=slept.append
    )
    assert len(result.files) == 6
    gaps = [s for s in slept if s > 0]
    assert any(abs(s - 0.2) < 1e-9 for s in gaps)  # 2 s between subbands / speed 10
    assert any(s > 20 for s in gaps)  # the second set waits for its ~309 s / 10 slot
    assert not list(tmp_path.glob("*_incomplete.hdf5"))


def test_truth_path_can_be_chosen(tiny_spec: Callable[..., SimulationSpec], tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "t.json"
    result = simulate(tiny_spec(tmp_path / "o", sets=1, n_subbands=1, truth=target))
    assert result.truth_path == target and target.exists()
    assert not (tmp_path / "o" / "truth.json").exists()


def test_bad_options_are_value_errors(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    for bad in ({"scale": "huge"}, {"n_subbands": 17}, {"sets": 0}, {"variable_fraction": 1.5}):
        with pytest.raises(ValueError):
            simulate(tiny_spec(tmp_path, **bad))


CATALOG_ERROR_ARCSEC = 1.2
"""Sigma per coordinate of the simulated catalog's position errors (Rayleigh mean 1.5")."""
CATALOG_ERROR_RMS_TOL = 0.35
"""Relative tolerance on the measured rms (a few tens of sources: the rms's own scatter ~10 %)."""


def test_catalog_errors_and_truth_beam_are_recorded_and_leave_the_sky_alone(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    plain = simulate(tiny_spec(tmp_path / "plain", sets=1, n_subbands=1))
    result = simulate(
        tiny_spec(tmp_path / "err", sets=1, n_subbands=1, catalog_error_arcsec=CATALOG_ERROR_ARCSEC)
    )
    assert plain.catalog_path is None and result.catalog_path == tmp_path / "err" / "catalog.csv"
    assert _digest(result.files) == _digest(plain.files)  # the sky keeps the true positions
    truth = json.loads(result.truth_path.read_text())  # type: ignore[union-attr]
    assert truth["beam"] == {"kind": "tapered", "diameter_m": 4.34, "taper": 1.2}
    assert truth["catalog_error_arcsec"] == CATALOG_ERROR_ARCSEC
    listed = read_catalog(result.catalog_path)
    src = truth["sources"]
    assert listed.ids == tuple(s["id"] for s in src)
    assert np.allclose(listed.ra_deg, [s["catalog_ra_deg"] for s in src], atol=1e-9)
    d_dec = (listed.dec_deg - np.array([s["dec_deg"] for s in src])) * 3600.0
    d_ra = (listed.ra_deg - np.array([s["ra_deg"] for s in src])) * 3600.0
    d_ra *= np.cos(np.radians(listed.dec_deg))
    rms = math.sqrt(float(np.mean(np.r_[d_ra, d_dec] ** 2)))
    assert abs(rms / CATALOG_ERROR_ARCSEC - 1) < CATALOG_ERROR_RMS_TOL
    with pytest.raises(ValueError, match="unknown beam"):
        simulate(tiny_spec(tmp_path / "bad", beam="gaussian"))
