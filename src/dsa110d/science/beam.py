"""The primary beam of one 4.65 m DSA-110 dish: an Airy pattern, vectorised.

``primary_beam(offset_rad, freq_hz)`` is the one function the simulator and the photometry's
beam correction both use, so a source's simulated flux and its corrected flux agree by
construction. The model is the far-field power pattern of a uniformly illuminated circular
aperture of diameter ``DISH_DIAMETER_M``: P(theta) = (2 J1(x) / x)^2 with
x = pi D sin(theta) / lambda, normalised to 1 on axis. A real dish is tapered (a slightly wider
main lobe, lower sidelobes); the Airy pattern is the standard first-order stand-in.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import j1

from dsa110d.science.constants import DISH_DIAMETER_M, SPEED_OF_LIGHT_M_S

"""Speed of light in vacuum, m/s (SI, exact)."""
AIRY_FWHM_FACTOR = 1.028993969962188
"""FWHM of the Airy power pattern in units of lambda / D (solves (2 J1(x)/x)^2 = 1/2)."""
AIRY_FIRST_NULL_FACTOR = 1.2196698912665045
"""First null of the Airy pattern in units of lambda / D (3.8317 / pi)."""
_SMALL_X = 1e-8
"""Below this x the pattern is 1 to double precision (avoids 0/0 on axis)."""


def primary_beam(
    offset_rad: ArrayLike, freq_hz: ArrayLike, diameter_m: float = DISH_DIAMETER_M
) -> NDArray[np.float64]:
    """Primary-beam power response (0..1, 1 on axis) at angular ``offset_rad`` from the
    pointing centre and frequency ``freq_hz``.

    Both arguments broadcast against each other with numpy rules (e.g. offsets of shape
    ``(n_sources, 1)`` and frequencies of shape ``(n_channels,)`` give ``(n_sources,
    n_channels)``). Divide an apparent flux by this to correct it for the beam.
    """
    offset = np.asarray(offset_rad, dtype=np.float64)
    freq = np.asarray(freq_hz, dtype=np.float64)
    x = np.pi * diameter_m * np.sin(offset) * freq / SPEED_OF_LIGHT_M_S
    x = np.abs(x)
    safe = np.where(x < _SMALL_X, 1.0, x)
    pattern = np.where(x < _SMALL_X, 1.0, 2.0 * j1(safe) / safe)
    return np.asarray(pattern * pattern, dtype=np.float64)


def fwhm_rad(freq_hz: ArrayLike, diameter_m: float = DISH_DIAMETER_M) -> NDArray[np.float64]:
    """Full width at half maximum of the power beam, radians (~2.7 deg at 1.4 GHz)."""
    wavelength = SPEED_OF_LIGHT_M_S / np.asarray(freq_hz, dtype=np.float64)
    return np.asarray(AIRY_FWHM_FACTOR * wavelength / diameter_m, dtype=np.float64)


def angular_offset_rad(
    ra1_rad: ArrayLike, dec1_rad: ArrayLike, ra2_rad: ArrayLike, dec2_rad: ArrayLike
) -> NDArray[np.float64]:
    """Great-circle separation between two directions, radians (haversine; stable when small)."""
    ra1, dec1 = np.asarray(ra1_rad, dtype=np.float64), np.asarray(dec1_rad, dtype=np.float64)
    ra2, dec2 = np.asarray(ra2_rad, dtype=np.float64), np.asarray(dec2_rad, dtype=np.float64)
    hav = (
        np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    )
    return np.asarray(2.0 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0))), dtype=np.float64)
