"""RFI and antenna faults in the simulator: what is applied is exactly what the truth says."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dsa110d.science.simulation import corruptions, layout
from dsa110d.science.simulation.corrupt_rfi import (
    DEAD_RESIDUAL,
    HOT_TSYS_FACTOR,
    RFI,
    channel_hits,
    integration_hits,
    truth_masks,
)
from dsa110d.science.simulation.simulate import SimulationSpec, simulate
from dsa110d.science.simulation.visibilities import noise_sigma_jy

pytestmark = pytest.mark.unit

SCALE = layout.SCALES["small"]
N_SUBBANDS = 16
HOURS = 3.0
"""Long enough for every kind of event (lines on and off, radar, bursts, drops)."""


def _instrument(seed: int) -> corruptions.InstrumentContext:
    start = 2461119.8
    return corruptions.InstrumentContext(
        antenna_numbers=layout.data_antennas(SCALE),
        freq_hz=layout.band_frequencies_hz(SCALE, N_SUBBANDS),
        start_jd=start,
        end_jd=start + HOURS / 24,
        integration_s=SCALE.integration_time_s,
        sefd_jy=5800.0,
        rng=np.random.default_rng(seed),
    )


def _run(seed: int) -> tuple[RFI, np.ndarray, np.ndarray, np.ndarray]:
    """The model applied, chunk by chunk, to noise-free autos (SEFD) and cross visibilities
    of 1 Jy; (model, time_jd, before, after) with vis (Nt, Nbls, Nsb, Nch, 2)."""
    inst = _instrument(seed)
    model = RFI(inst)
    ant_1, ant_2 = layout.baselines(SCALE)
    step = SCALE.integration_time_s / 86400
    times = inst.start_jd + step * np.arange(int(HOURS * 3600 / SCALE.integration_time_s))
    before = np.ones((len(times), len(ant_1), *inst.freq_hz.shape, 2), dtype=np.complex64)
    before[:, ant_1 == ant_2] = 5800.0
    after = before.copy()
    for t0 in range(0, len(times), 2):
        window = np.asarray(times[t0 : t0 + 2], np.float64)
        chunk = corruptions.ChunkContext(0, t0, window, ant_1, ant_2, inst.freq_hz, 5800.0)
        model.apply(after[t0 : t0 + 2], chunk)
    return model, times, before, after


@pytest.fixture(scope="module")
def applied() -> tuple[RFI, np.ndarray, np.ndarray, np.ndarray]:
    return _run(seed=11)


def test_the_truth_masks_are_exactly_the_samples_changed(
    applied: tuple[RFI, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    model, times, before, after = applied
    truth = json.loads(json.dumps(model.truth()))
    ant_1, ant_2 = layout.baselines(SCALE)
    freq = model.instrument.freq_hz.ravel()
    masks = truth_masks(truth, times, freq, ant_1, ant_2)
    n_t, n_bls = before.shape[:2]
    changed = np.any(after != before, axis=-1).reshape(n_t, n_bls, -1)
    cross = (ant_1 != ant_2)[None, :, None]
    touched = (masks.rfi_amplitude_jy > 0) | masks.faulty
    assert np.array_equal(changed & cross, touched & cross)
    # Every kind of event happened, and interference sits on a few % of the samples.
    kinds = {e["kind"] for e in truth["events"]}
    assert kinds == {"line", "radar", "burst", "bad_channel"}
    assert truth["dropped"]
    assert 0.01 < float(np.mean(masks.rfi_amplitude_jy[:, ant_1 != ant_2] > 0)) < 0.3
    # The injected amplitude is what the mask says (cross-correlations away from faults).
    sigma = noise_sigma_jy(SCALE.channel_width_hz, SCALE.integration_time_s, 5800.0)
    assert truth["noise_sigma_jy"] == pytest.approx(sigma)
    line = next(e for e in truth["events"] if e["kind"] == "line")
    t_hit = integration_hits(line, times, SCALE.integration_time_s)
    c_hit = channel_hits(line, freq, SCALE.channel_width_hz)
    clean_bls = np.flatnonzero((ant_1 != ant_2) & ~masks.faulty.any(axis=(0, 2)))
    t, c = np.flatnonzero(t_hit)[0], np.flatnonzero(c_hit)[0]
    got = np.abs(after.reshape(n_t, n_bls, -1, 2)[t, clean_bls, c, 0])
    want = masks.rfi_amplitude_jy[t, clean_bls, c]
    np.testing.assert_allclose(got, want, atol=1.0 + 1e-3)  # |rfi + 1 Jy|


def test_the_faulty_antennas_show_in_their_autocorrelations(
    applied: tuple[RFI, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    model, _, _, after = applied
    truth = model.truth()
    ant_1, ant_2 = layout.baselines(SCALE)
    autos = after[:, ant_1 == ant_2].real  # (Nt, Nant, Nsb, Nch, 2)
    power = np.median(autos, axis=(0, 2, 3, 4))
    ants = list(ant_1[ant_1 == ant_2])
    dead, hot = truth["bad_antennas"]["dead"][0], truth["bad_antennas"]["hot"][0]
    assert power[ants.index(dead)] == pytest.approx(5800.0 * DEAD_RESIDUAL, rel=0.05)
    assert power[ants.index(hot)] == pytest.approx(5800.0 * HOT_TSYS_FACTOR, rel=0.05)
    wobbly = truth["bad_antennas"]["oscillating"][0]
    series = np.median(autos[:, ants.index(wobbly)], axis=(1, 2, 3))
    assert np.ptp(series) / np.median(series) > 0.5
    assert truth["bad_antenna_names"]["dead"] == [str(dead + 1)]
    assert len({dead, hot, wobbly}) == 3


def test_rfi_is_part_of_level_all_only(
    tmp_path: Path, tiny_spec: Callable[..., SimulationSpec]
) -> None:
    gains = simulate(tiny_spec(tmp_path / "g", sets=1, n_subbands=1, corrupt="gains"))
    every = simulate(tiny_spec(tmp_path / "a", sets=1, n_subbands=1, corrupt="all"))
    assert "rfi" not in json.loads(gains.truth_path.read_text())["corruptions"]  # type: ignore[union-attr]
    rfi = json.loads(every.truth_path.read_text())["corruptions"]["rfi"]  # type: ignore[union-attr]
    assert rfi["model"] == "rfi" and rfi["bad_antenna_names"]["dead"]
