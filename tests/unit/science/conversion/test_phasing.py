"""The per-subband w-term phasors: the first-channel x offset split against the full form."""

from __future__ import annotations

import numpy as np

from dsa110d.science.constants import CHANNEL_WIDTH_HZ, SPEED_OF_LIGHT_M_S
from dsa110d.science.conversion.phasing import SubbandPhasors, conj_w_phasor

SPLIT_PHASE_TOL_RAD = 5e-7  # the split's product of two complex64 factors


def subband_freq_over_c(n_subbands: int, nchan: int, descending: list[bool]) -> list[np.ndarray]:
    """Contiguous subbands of ``nchan`` channels, each in its file's own order."""
    out = []
    for s in range(n_subbands):
        freqs = 1.31e9 + (s * nchan + np.arange(nchan)) * CHANNEL_WIDTH_HZ
        out.append((freqs[::-1] if descending[s] else freqs) / SPEED_OF_LIGHT_M_S)
    return out


def full(w: np.ndarray, freq_over_c: np.ndarray) -> np.ndarray:
    shape = (w.size, freq_over_c.size)
    work = (np.empty(shape), np.empty(shape), np.empty(shape, dtype=np.float32))
    return conj_w_phasor(w, freq_over_c, work, np.empty(shape, dtype=np.complex64))


def test_the_split_matches_the_full_phasor_for_rising_and_falling_subbands() -> None:
    rng = np.random.default_rng(3)
    w = rng.uniform(-300.0, 300.0, 500)  # m: far more turns than DSA-110's w differences
    per_subband = subband_freq_over_c(4, 48, descending=[True, False, True, True])
    phasors = SubbandPhasors(per_subband, w, nrows=256)
    assert phasors.split is not None
    for start in (0, 256):  # a full block and a shorter last one
        block = w[start : start + 256]
        phasors.block(block)
        for index, k in enumerate(per_subband):
            ours = phasors.subband(index)
            assert ours.shape == (block.size, 48)
            phase = np.angle(ours / full(block, k))
            assert np.max(np.abs(phase)) <= SPLIT_PHASE_TOL_RAD
            assert np.allclose(np.abs(ours), 1.0, atol=1e-6)


def test_unevenly_spaced_channels_get_the_full_phasor() -> None:
    w = np.linspace(-50.0, 50.0, 64)
    per_subband = subband_freq_over_c(2, 16, descending=[True, True])
    per_subband[1] = per_subband[1].copy()
    per_subband[1][5] += 1e-6  # one channel off the grid by ~300 Hz
    phasors = SubbandPhasors(per_subband, w, nrows=64)
    assert phasors.split is None
    phasors.block(w)
    for index, k in enumerate(per_subband):
        np.testing.assert_array_equal(phasors.subband(index), full(w, k))
