"""The primary beam of one DSA-110 dish, vectorised: the instrument's tapered model by default,
an Airy pattern as an option.

``primary_beam(offset_rad, freq_hz, ..., model=...)`` is the one function the simulator, the
photometry's beam correction and any beam weighting of images use; a :class:`BeamModel` names
the pattern and its parameters (``photometry.beam_*`` in the configuration; the simulator's
truth beam is chosen on its own, ``SimulationSpec.beam``, so a test can make them differ).

Models (power patterns, 1 on axis, theta the angle from the pointing, lambda the wavelength):

- ``tapered`` (default): the DSA-110 collaboration's own model of its 4.65 m dishes (dsa110-calib
  ``pb_resp``), the pattern of an aperture with a cosine-tapered illumination,
  P = (cos(pi x) / (1 - 4 x^2))^2 with x = k D sin(theta) / lambda, k = 1.2 (the taper factor)
  and D = 4.34 m (the effective illuminated diameter). FWHM 2.80 deg at 1.4 GHz; first null at
  x = 1.5 (4.9 deg at 1.4 GHz). At x = 1/2 both numerator and denominator vanish; the limit
  (pi / 4) is used there.
- ``airy``: a uniformly illuminated circular aperture of diameter D (4.65 m by default),
  P = (2 J1(x) / x)^2 with x = pi D sin(theta) / lambda; FWHM 2.71 deg at 1.4 GHz. What this
  module used before the tapered model; 0.94 of the tapered gain at 1.5 deg off axis and 0.87 at
  2 deg (1.4 GHz), so using the wrong one biases fluxes off axis by that much.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import j1

from dsa110d.config import BeamConfig
from dsa110d.science.constants import DISH_DIAMETER_M, SPEED_OF_LIGHT_M_S

BeamKind = Literal["tapered", "airy"]
BEAM_KINDS: Final = ("tapered", "airy")

TAPERED_DIAMETER_M: Final = 4.34
"""Effective diameter of the tapered model, m (the instrument's own beam model)."""
TAPERED_TAPER: Final = 1.2
"""Taper factor k of the tapered model, x = k D sin(theta) / lambda."""
TAPERED_FWHM_X: Final = 0.5944823904664727
"""x at half power of the tapered pattern ((cos(pi x) / (1 - 4 x^2))^2 = 1/2)."""
AIRY_FWHM_FACTOR: Final = 1.028993969962188
"""FWHM of the Airy power pattern in units of lambda / D (solves (2 J1(x)/x)^2 = 1/2)."""
AIRY_FIRST_NULL_FACTOR: Final = 1.2196698912665045
"""First null of the Airy pattern in units of lambda / D (3.8317 / pi)."""
_SMALL_X = 1e-8
"""Below this x the Airy pattern is 1 to double precision (avoids 0/0 on axis)."""
_HALF_X_TOL = 1e-6
"""Within this of x = 1/2 the tapered pattern takes its limit (pi/4)^2 (avoids 0/0)."""


@dataclass(frozen=True)
class BeamModel:
    """A primary-beam pattern: its kind, diameter (m) and, for the tapered one, taper factor."""

    kind: BeamKind = "tapered"
    diameter_m: float = TAPERED_DIAMETER_M
    taper: float = TAPERED_TAPER

    def __post_init__(self) -> None:
        if self.kind not in BEAM_KINDS:
            raise ValueError(f"unknown beam model {self.kind!r}; choose {', '.join(BEAM_KINDS)}")
        if not self.diameter_m > 0 or not self.taper > 0:
            raise ValueError("beam diameter and taper must be > 0")

    def describe(self) -> dict[str, float | str]:
        """The model as JSON-able data (truth files, records)."""
        return {"kind": self.kind, "diameter_m": self.diameter_m, "taper": self.taper}


TAPERED: Final = BeamModel("tapered", TAPERED_DIAMETER_M, TAPERED_TAPER)
"""The instrument's model: the default everywhere."""
AIRY: Final = BeamModel("airy", DISH_DIAMETER_M, 1.0)
"""The uniformly illuminated 4.65 m dish (the option, and the model of earlier versions)."""
DEFAULT_BEAM: Final = TAPERED


def beam_model(kind: str, diameter_m: float | None = None, taper: float | None = None) -> BeamModel:
    """A model by name, with its standard parameters unless given."""
    base = {"tapered": TAPERED, "airy": AIRY}.get(kind)
    if base is None:
        raise ValueError(f"unknown beam model {kind!r}; choose {', '.join(BEAM_KINDS)}")
    return BeamModel(
        base.kind,
        base.diameter_m if diameter_m is None else diameter_m,
        base.taper if taper is None else taper,
    )


def configured_beam(beam: BeamConfig) -> BeamModel:
    """The model the configuration's ``beam`` section names (what photometry corrects with,
    and what any primary-beam weighting of images or mosaics should use)."""
    taper = beam.taper if beam.model == "tapered" else None  # the Airy pattern has none
    return beam_model(beam.model, beam.diameter_m, taper)


def primary_beam(
    offset_rad: ArrayLike,
    freq_hz: ArrayLike,
    diameter_m: float | None = None,
    *,
    model: BeamModel = DEFAULT_BEAM,
) -> NDArray[np.float64]:
    """Primary-beam power response (0..1, 1 on axis) at angular ``offset_rad`` from the
    pointing centre and frequency ``freq_hz``, for ``model`` (the tapered DSA-110 model by
    default; ``diameter_m`` overrides the model's diameter).

    Both arguments broadcast against each other with numpy rules (e.g. offsets of shape
    ``(n_sources, 1)`` and frequencies of shape ``(n_channels,)`` give ``(n_sources,
    n_channels)``). Divide an apparent flux by this to correct it for the beam.
    """
    offset = np.asarray(offset_rad, dtype=np.float64)
    freq = np.asarray(freq_hz, dtype=np.float64)
    diameter = model.diameter_m if diameter_m is None else diameter_m
    d_sin = diameter * np.abs(np.sin(offset)) * freq / SPEED_OF_LIGHT_M_S  # D sin(theta) / lambda
    if model.kind == "airy":
        x = np.pi * d_sin
        safe = np.where(x < _SMALL_X, 1.0, x)
        pattern = np.where(x < _SMALL_X, 1.0, 2.0 * j1(safe) / safe)
    else:
        x = model.taper * d_sin
        near_half = np.abs(x - 0.5) < _HALF_X_TOL
        denominator = np.where(near_half, 1.0, 1.0 - 4.0 * x * x)
        pattern = np.where(near_half, np.pi / 4.0, np.cos(np.pi * x) / denominator)
    return np.asarray(pattern * pattern, dtype=np.float64)


def fwhm_rad(
    freq_hz: ArrayLike, diameter_m: float | None = None, *, model: BeamModel = DEFAULT_BEAM
) -> NDArray[np.float64]:
    """Full width at half maximum of the power beam, radians (2.80 deg at 1.4 GHz for the
    tapered model, 2.715 deg for the Airy one)."""
    wavelength = SPEED_OF_LIGHT_M_S / np.asarray(freq_hz, dtype=np.float64)
    diameter = model.diameter_m if diameter_m is None else diameter_m
    if model.kind == "airy":
        return np.asarray(AIRY_FWHM_FACTOR * wavelength / diameter, dtype=np.float64)
    half = np.arcsin(TAPERED_FWHM_X * wavelength / (model.taper * diameter))
    return np.asarray(2.0 * half, dtype=np.float64)


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
