"""StEFCal on synthetic data: gains recovered within their errors, flagged antennas, the
reference antenna and its fallback; the calibration table round trip; flux models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from casacore import tables

from dsa110d.science.calibration import caltables
from dsa110d.science.calibration.solver import (
    choose_reference,
    normal_sums,
    referenced,
    stefcal,
)
from dsa110d.science.fluxmodels import model_flux_jy, spectral_shape
from tests.helpers.testms import SimBlock

pytestmark = pytest.mark.unit

N_ANT = 12
N_TIMES = 20
NOISE = 0.05
"""Per real and imaginary part of a visibility."""


def _synthetic(seed: int, dead: int | None = None) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    gain = (1 + 0.2 * rng.standard_normal(N_ANT)) * np.exp(1j * rng.uniform(-np.pi, np.pi, N_ANT))
    i, j = np.triu_indices(N_ANT, 1)
    rows = np.tile(np.arange(i.size), N_TIMES)
    a1, a2 = i[rows], j[rows]
    model = (rng.standard_normal(rows.size) + 1j * rng.standard_normal(rows.size)) + 2.0
    noise = NOISE * (rng.standard_normal(rows.size) + 1j * rng.standard_normal(rows.size))
    data = gain[a1] * np.conj(gain[a2]) * model + noise
    weight = np.ones(rows.size)
    if dead is not None:
        weight[(a1 == dead) | (a2 == dead)] = 0.0
    return gain, a1, a2, data[:, None], model[:, None], weight[:, None]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stefcal_recovers_gains_within_their_errors(seed: int) -> None:
    gain, a1, a2, data, model, weight = _synthetic(seed)
    sums = normal_sums(data, model, weight, a1, a2, np.zeros(a1.size, np.intp), 1, N_ANT)
    solved = stefcal(sums)
    assert not solved.flagged.any()
    assert solved.sigma[0] == pytest.approx(NOISE, rel=0.1)
    # Remove the gauge (the phase of antenna 0) from both before comparing.
    got, want = referenced(solved.gain, 0)[0], referenced(gain[None], 0)[0]
    pull = np.abs(got - want)[1:] / solved.error[0, 1:]
    assert np.all(pull < 5)
    assert np.mean(pull**2) / 2 < 3  # per part; referencing adds antenna 0's error


def test_an_antenna_without_data_is_flagged_and_the_reference_falls_back() -> None:
    _, a1, a2, data, model, weight = _synthetic(4, dead=5)
    sums = normal_sums(data, model, weight, a1, a2, np.zeros(a1.size, np.intp), 1, N_ANT)
    solved = stefcal(sums)
    assert np.flatnonzero(solved.flagged[0]).tolist() == [5]
    antennas = np.arange(N_ANT, dtype=np.int64) + 100
    weight_per_antenna = sums.weight[0]
    assert choose_reference(solved.flagged[0], 103, antennas, weight_per_antenna) == 3
    fallback = choose_reference(solved.flagged[0], 105, antennas, weight_per_antenna)
    assert fallback != 5 and not solved.flagged[0, fallback]
    assert choose_reference(solved.flagged[0], 999, antennas, weight_per_antenna) != 5


def _solution(kind: caltables.Kind, n_chan: int) -> caltables.Solution:
    rng = np.random.default_rng(0)
    shape = (2, 4, n_chan, 2)
    gain = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    flag = np.zeros(shape, bool)
    flag[:, 2] = True
    return caltables.Solution(
        kind, np.array([5e9, 5e9 + 300]), np.array([300.0, 300.0]),
        np.array([0, 3, 7, 9]), np.linspace(1.3e9, 1.5e9, n_chan), gain,
        np.full(shape, 0.01), np.full(shape, 50.0), flag, 3,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "n_chan", "viscal"), [("bandpass", 8, "B Jones"), ("gains", 1, "G Jones")]
)
def test_a_solution_round_trips_through_a_casa_calibration_table(
    tmp_path: Path, sim_block_master: SimBlock, kind: caltables.Kind, n_chan: int, viscal: str
) -> None:
    solution = _solution(kind, n_chan)
    record = caltables.SolutionRecord(
        solution_id="x1", kind=kind, block_id="B", block_version=1, set_ids=["s"],
        valid_from_mjd=1.0, valid_to_mjd=2.0, calibrator=None, reference_antenna=3,
        n_antennas=4, flagged_antennas=[7], snr_median=50.0, amp_scatter=0.1,
        phase_scatter_deg=1.0, outlier_antennas=[], table="x1.tab", created_at="now",
        status="ok",
    )  # fmt: skip
    written = caltables.write_solution(tmp_path, record, solution, sim_block_master.ms_paths[0])
    data = json.loads(written.read_text())
    for name in ("solution_id", "kind", "block_id", "block_version", "set_ids", "valid_from_mjd",
                 "valid_to_mjd", "calibrator", "reference_antenna", "n_antennas",
                 "flagged_antennas", "snr_median", "amp_scatter", "phase_scatter_deg",
                 "outlier_antennas", "table", "created_at", "status"):  # fmt: skip
        assert name in data
    path = tmp_path / "cal" / kind / "x1.tab"
    with tables.table(str(path), ack=False) as t:
        assert t.info()["type"] == "Calibration"
        assert t.getkeyword("VisCal") == viscal
        assert t.getcol("CPARAM").shape == (8, n_chan, 2)
        assert set(t.colnames()) >= {"TIME", "ANTENNA1", "SPECTRAL_WINDOW_ID", "FLAG", "SNR"}
    back = caltables.read_solution(path)
    np.testing.assert_allclose(back.gain, solution.gain, rtol=1e-6)
    assert np.array_equal(back.flag, solution.flag)
    assert back.antennas.tolist() == [0, 3, 7, 9]
    assert caltables.read_records(tmp_path, kind)[0].solution_id == "x1"


def test_newest_valid_prefers_the_latest_solved_before() -> None:
    def rec(name: str, solved: float, status: str = "ok") -> caltables.SolutionRecord:
        return caltables.SolutionRecord(
            solution_id=name, kind="bandpass", block_id="B", block_version=1, set_ids=[],
            valid_from_mjd=solved - 3, valid_to_mjd=solved + 3, calibrator="C",
            reference_antenna=0, n_antennas=1, flagged_antennas=[], snr_median=1.0,
            amp_scatter=0.0, phase_scatter_deg=0.0, outlier_antennas=[], table="t",
            created_at="now", status=status, extra={"solved_mjd": solved},  # type: ignore[arg-type]
        )  # fmt: skip

    records = [rec("a", 10.0), rec("b", 12.0), rec("c", 13.0, "poor"), rec("d", 20.0)]
    assert caltables.newest_valid(records, 13.5).solution_id == "b"  # type: ignore[union-attr]
    assert caltables.newest_valid(records, 9.0).solution_id == "a"  # type: ignore[union-attr]
    assert caltables.newest_valid(records, 30.0) is None


def test_perley_butler_2017_3c286_at_l_band() -> None:
    # PB17 Table 6 polynomial: ~14.7-14.9 Jy at 1.465 GHz (their Table 7 measurements).
    assert 14.5 < float(model_flux_jy("PB17:3C286", 1.465e9)) < 15.1
    shape = spectral_shape("PB17:3C286", np.array([1.3e9, 1.5e9]), 1.4e9)
    assert shape[0] > 1.0 > shape[1]  # a falling spectrum
    with pytest.raises(ValueError, match="unknown calibrator"):
        model_flux_jy("PB17:3C999", 1.4e9)
