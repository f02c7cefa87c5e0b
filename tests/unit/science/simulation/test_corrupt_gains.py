"""The antenna-gain corruption: what it does to the visibilities is what the truth says."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from dsa110d.science.catalog import calibrator_rows, read_catalog, write_catalog
from dsa110d.science.simulation import layout
from dsa110d.science.simulation.corrupt_gains import (
    AMPLITUDE_SCATTER,
    DELAY_SCATTER_NS,
    true_gains,
)
from dsa110d.science.simulation.simulate import (
    CALIBRATOR_ID,
    SimulationSpec,
    simulate,
    sky_catalog,
)

pytestmark = pytest.mark.unit


def _read(path: Path) -> tuple[np.ndarray, ...]:
    with h5py.File(path, "r") as f:
        return (
            np.asarray(f["Data/visdata"][()])[:, 0],
            np.asarray(f["Header/time_array"][()]),
            np.asarray(f["Header/ant_1_array"][()]),
            np.asarray(f["Header/ant_2_array"][()]),
            np.asarray(f["Header/freq_array"][()]).ravel(),
        )


def test_the_gains_applied_are_the_truth_files(
    tmp_path: Path, tiny_spec: Callable[..., SimulationSpec]
) -> None:
    # The same sky (calibrator or not: the catalog file fixes it) with and without gains.
    catalog = tmp_path / "sky.csv"
    write_catalog(catalog, sky_catalog(tiny_spec(tmp_path, corrupt="gains")))
    clean = simulate(tiny_spec(tmp_path / "c", sets=1, n_subbands=1, catalog=catalog))
    dirty = simulate(
        tiny_spec(tmp_path / "d", sets=1, n_subbands=1, catalog=catalog, corrupt="gains")
    )
    v0, time, a1, a2, freq = _read(clean.files[0])
    v1, *_ = _read(dirty.files[0])
    truth = json.loads(dirty.truth_path.read_text())["corruptions"]["gains"]  # type: ignore[union-attr]
    times = np.unique(time)
    g = true_gains(truth, times, freq)  # (Nt, Nant, Nchan, 2)
    numbers = np.asarray(truth["antenna_numbers"])
    t = np.searchsorted(times, time)
    i, j = np.searchsorted(numbers, a1), np.searchsorted(numbers, a2)
    expected = v0 * g[t, i] * np.conj(g[t, j])
    np.testing.assert_allclose(v1, expected, rtol=1e-4, atol=1e-3)
    assert np.abs(v1 - v0).max() > 1.0  # the gains did something


def test_the_gain_parameters_are_physical(
    tmp_path: Path, tiny_spec: Callable[..., SimulationSpec]
) -> None:
    result = simulate(tiny_spec(tmp_path, sets=1, n_subbands=1, scale="small", corrupt="gains"))
    truth = json.loads(result.truth_path.read_text())["corruptions"]["gains"]  # type: ignore[union-attr]
    amplitude = np.asarray(truth["amplitude"])
    assert amplitude.shape == (layout.SCALES["small"].n_antennas, 2)
    assert 0.5 * AMPLITUDE_SCATTER < np.std(amplitude) < 1.5 * AMPLITUDE_SCATTER
    assert np.ptp(truth["phase_rad"]) > np.pi  # random phases
    assert 0.3 * DELAY_SCATTER_NS < np.std(truth["delay_ns"]) < 3 * DELAY_SCATTER_NS


def test_corrupted_runs_get_a_calibrator_that_transits(
    tmp_path: Path, tiny_spec: Callable[..., SimulationSpec]
) -> None:
    path = tmp_path / "sky.csv"
    write_catalog(path, sky_catalog(tiny_spec(tmp_path, corrupt="gains")))
    catalog = read_catalog(path)
    rows = calibrator_rows(catalog)
    assert [catalog.ids[r] for r in rows] == [CALIBRATOR_ID]
    assert catalog.extra["flux_model"][rows[0]] == "PB17:3C286"
    assert calibrator_rows(sky_catalog(tiny_spec(tmp_path, corrupt="none"))).size == 0
