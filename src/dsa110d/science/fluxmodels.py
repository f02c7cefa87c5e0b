"""Flux-density models of calibrators: the spectrum a catalog row's ``flux_model`` names.

A catalog row may carry a ``flux_model`` column (see :mod:`dsa110d.science.catalog`):

- empty or ``flat``: the catalog ``flux_jy`` at every frequency (the default sky model);
- ``PB17:<name>``: the Perley & Butler (2017, ApJS 230, 7) polynomial for a standard
  calibrator, ``log10 S[Jy] = a0 + a1 x + a2 x^2 + a3 x^3`` with ``x = log10(nu / GHz)``
  (their Table 6, valid 50 MHz - 50 GHz; the L band is well inside).

The catalog ``flux_jy`` of a modelled source is the model at the band centre, so a flat-spectrum
reading of the catalog (the photometry's) agrees with the model there.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

PERLEY_BUTLER_2017: dict[str, tuple[float, ...]] = {
    "3C48": (1.3253, -0.7553, -0.1914, 0.0498),
    "3C138": (1.0088, -0.4981, -0.1550, -0.0100, 0.0220),
    "3C147": (1.4516, -0.6961, -0.2007, 0.0640, -0.0464, 0.0289),
    "3C196": (1.2872, -0.8530, -0.1534, -0.0200, 0.0201),
    "3C286": (1.2481, -0.4507, -0.1798, 0.0357),
    "3C295": (1.4701, -0.7658, -0.2780, -0.0347, 0.0399),
}
"""Perley-Butler 2017 coefficients (a0, a1, ...) of log10 S[Jy] in powers of log10(nu/GHz)."""

FLAT = "flat"
PB17_PREFIX = "PB17:"


def is_known_model(model: str) -> bool:
    """Whether ``model`` names a spectrum this module can evaluate."""
    name = model.strip()
    if name in ("", FLAT):
        return True
    return name.upper().startswith(PB17_PREFIX) and name[len(PB17_PREFIX) :] in PERLEY_BUTLER_2017


def model_flux_jy(model: str, freq_hz: ArrayLike) -> NDArray[np.float64]:
    """The flux density of a Perley-Butler 2017 calibrator (``PB17:3C286``) at ``freq_hz``."""
    name = model.strip()
    if not name.upper().startswith(PB17_PREFIX):
        raise ValueError(f"{model!r} is not a Perley-Butler 2017 model (PB17:<name>)")
    coefficients = PERLEY_BUTLER_2017.get(name[len(PB17_PREFIX) :])
    if coefficients is None:
        raise ValueError(f"unknown calibrator {model!r}; known: {sorted(PERLEY_BUTLER_2017)}")
    x = np.log10(np.asarray(freq_hz, dtype=np.float64) / 1e9)
    log_s = sum(c * x**i for i, c in enumerate(coefficients))
    return np.asarray(10.0**log_s, dtype=np.float64)


def spectral_shape(model: str, freq_hz: ArrayLike, reference_hz: float) -> NDArray[np.float64]:
    """S(nu) / S(reference) for ``model`` (1 everywhere for a flat spectrum)."""
    freq = np.asarray(freq_hz, dtype=np.float64)
    if model.strip() in ("", FLAT):
        return np.ones_like(freq)
    return model_flux_jy(model, freq) / float(model_flux_jy(model, reference_hz))


def band_centre_hz() -> float:
    """The DSA-110 band's centre frequency (the catalog fluxes' reference), Hz."""
    from dsa110d.science.constants import BAND_BOTTOM_FREQ_HZ, SB00_TOP_FREQ_HZ

    return 0.5 * (BAND_BOTTOM_FREQ_HZ + SB00_TOP_FREQ_HZ)
