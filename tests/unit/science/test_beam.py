"""The Airy primary beam of a 4.65 m dish."""

from __future__ import annotations

import numpy as np

from dsa110d.science.beam import (
    AIRY_FIRST_NULL_FACTOR,
    angular_offset_rad,
    fwhm_rad,
    primary_beam,
)
from dsa110d.science.constants import DISH_DIAMETER_M, SPEED_OF_LIGHT_M_S

BEAM_TOL = 1e-3
"""Absolute tolerance on a beam power (dimensionless)."""


def test_on_axis_response_is_one() -> None:
    assert primary_beam(0.0, 1.4e9) == 1.0


def test_half_power_at_half_the_fwhm() -> None:
    freq = np.array([1.311e9, 1.4e9, 1.4987e9])
    assert np.allclose(primary_beam(fwhm_rad(freq) / 2, freq), 0.5, atol=BEAM_TOL)


def test_fwhm_near_2_7_degrees_at_1_4_ghz() -> None:
    assert abs(np.degrees(fwhm_rad(1.4e9)) - 2.715) < 0.01


def test_first_null_is_dark() -> None:
    null = AIRY_FIRST_NULL_FACTOR * SPEED_OF_LIGHT_M_S / 1.4e9 / DISH_DIAMETER_M
    assert primary_beam(np.arcsin(null), 1.4e9) < 1e-12


def test_beam_narrows_with_frequency() -> None:
    offset = np.radians(1.0)
    assert primary_beam(offset, 1.5e9) < primary_beam(offset, 1.3e9)


def test_broadcasts_sources_against_channels() -> None:
    out = primary_beam(np.radians([[0.0], [1.0], [2.0]]), np.linspace(1.3e9, 1.5e9, 5))
    assert out.shape == (3, 5)
    assert np.all(np.diff(out[:, 0]) < 0)


def test_symmetric_in_offset_sign() -> None:
    assert primary_beam(-0.01, 1.4e9) == primary_beam(0.01, 1.4e9)


def test_angular_offset_small_and_large() -> None:
    assert abs(angular_offset_rad(0.0, 0.0, np.radians(1.0), 0.0) - np.radians(1.0)) < 1e-12
    dec = np.radians(60.0)
    expected = np.radians(1.0) * np.cos(dec)  # ~ along a parallel, short arc
    assert abs(angular_offset_rad(0.0, dec, np.radians(1.0), dec) - expected) < 1e-6
    assert abs(angular_offset_rad(0.0, np.pi / 2, 1.0, -np.pi / 2) - np.pi) < 1e-12
