"""The fast visibility model equals the direct sum over sources and channels."""

from __future__ import annotations

import math

import numpy as np

from dsa110d.science.beam import primary_beam
from dsa110d.science.constants import SPEED_OF_LIGHT_M_S
from dsa110d.science.simulation.layout import SCALES, band_frequencies_hz
from dsa110d.science.simulation.visibilities import noise_sigma_jy, sky_visibilities

VIS_TOL_JY = 1e-4
"""complex64 model against a float64 direct sum of a few Jy: agree to 0.1 mJy."""


def _sky(n_src: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    lm = rng.normal(0.0, 0.03, (n_src, 2))
    lmn = np.column_stack([lm, np.sqrt(1 - (lm**2).sum(axis=1))])
    return lmn, np.arcsin(np.hypot(lm[:, 0], lm[:, 1]))


def test_matches_the_direct_sum() -> None:
    rng = np.random.default_rng(5)
    freq = band_frequencies_hz(SCALES["small"], 16)
    uvw = rng.normal(0.0, 600.0, (300, 3))
    lmn, offset = _sky(7, rng)
    amplitude = rng.uniform(0.1, 5.0, 7)[:, None, None] * primary_beam(offset[:, None, None], freq)
    fast = sky_visibilities(uvw, lmn, amplitude, freq)
    delay = uvw @ (lmn - [0.0, 0.0, 1.0]).T / SPEED_OF_LIGHT_M_S
    phase = np.exp(2j * np.pi * delay[:, :, None, None] * freq[None, None])
    direct = np.einsum("sfc,bsfc->bfc", amplitude, phase)
    assert np.abs(fast - direct).max() < VIS_TOL_JY


def test_a_source_at_the_phase_centre_is_real_and_flat() -> None:
    freq = band_frequencies_hz(SCALES["tiny"], 4)
    uvw = np.random.default_rng(1).normal(0.0, 600.0, (50, 3))
    amplitude = np.full((1, *freq.shape), 3.0)
    vis = sky_visibilities(uvw, np.array([[0.0, 0.0, 1.0]]), amplitude, freq)
    assert np.allclose(vis, 3.0, atol=VIS_TOL_JY)


def test_no_sources_no_signal() -> None:
    freq = band_frequencies_hz(SCALES["tiny"], 2)
    vis = sky_visibilities(np.ones((10, 3)), np.zeros((0, 3)), np.zeros((0, *freq.shape)), freq)
    assert vis.shape == (10, *freq.shape) and not vis.any()


def test_noise_follows_the_radiometer_equation() -> None:
    sigma = noise_sigma_jy(244140.625, 12.884902, 5800.0)
    assert math.isclose(sigma, 5800.0 / math.sqrt(2 * 244140.625 * 12.884902))
    assert 2.2 < sigma < 2.4
