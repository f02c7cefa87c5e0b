"""What a photometry run is configured with: the beam model, the uv range and the error floor.

The defaults are the configuration's (``beam.*``, ``photometry.*``); the stage builds them from
the :class:`~dsa110d.config.Config`, tests and benches give them directly.

**uv range, in wavelengths.** A baseline (row) is used when its projected length sqrt(u^2 + v^2)
at the band centre is within [``uv_min_lambda``, ``uv_max_lambda``]; the band spans +/-9 % about
its centre, so the cut is that sharp in wavelengths. The lower limit keeps out what a point
source model lacks on large scales: Galactic and other diffuse emission (a baseline of L
wavelengths sees structure smaller than ~1/L rad; 100 lambda passes scales below ~34 arcmin
and suppresses the degree-scale Galactic foreground that dominates short spacings at 1.4 GHz)
and the cross-talk of neighbouring dishes (the core's 5.75 m spacing is 27 lambda). It replaces
a 20 m physical cut (93 lambda at 1.4 GHz). The upper limit is off by default: the joint fit
models every catalog source at its position, and the effect of catalog position errors (a
long baseline decorrelates as cos(2 pi u . dtheta)) is measured and bounded in
docs/photometry.md (1-2 arcsec costs ~1-4 % of the flux, the same every transit); an upper limit
of a few thousand lambda trades sensitivity for less of that loss.

**Position refinement.** With ``refine_min_snr`` set, a block is measured twice when a source
at least that bright shows a significant offset (3 sigma, under 10 arcsec) from its catalog
position in the imaginary parts of its rotated visibilities (``solve.position_offsets``): the
second pass rotates those sources to where the data put them. That removes their own flux
loss and, more important on a sparse array, the part of their sidelobes a mislocated model
leaves in their neighbours' data (docs/photometry.md). It doubles the block's photometry time
when it triggers; off by default.

**Systematic floor.** The reported error is sqrt(statistical^2 + (f S)^2) with f
``systematic_fraction``: what repeats the same way within a block but not from day to day
(gain calibration, beam model and pointing) and the thermal error does not hold. 2 % by default:
the repeatability of a calibrated DSA-110 flux scale from day to day, and what keeps bright
constant sources, whose thermal errors are < 1 %, from being called variable by a few % of
calibration drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dsa110d.config import Config
from dsa110d.science.beam import DEFAULT_BEAM, BeamModel, configured_beam

DEFAULT_UV_MIN_LAMBDA = 100.0
"""Shortest baseline used, wavelengths at the band centre (see the module docstring)."""
DEFAULT_SYSTEMATIC_FRACTION = 0.02
"""Fractional error added in quadrature to the statistical one (see the module docstring)."""


@dataclass(frozen=True)
class PhotometrySettings:
    """The beam the fluxes are corrected with, the baselines used and the error floor."""

    beam: BeamModel = DEFAULT_BEAM
    uv_min_lambda: float = DEFAULT_UV_MIN_LAMBDA
    uv_max_lambda: float = math.inf
    systematic_fraction: float = DEFAULT_SYSTEMATIC_FRACTION
    refine_min_snr: float | None = None
    """Sources at least this bright (flux / error) whose offset from the catalog position is
    significant are measured again at the position the data give (None: never)."""
    require_calibration: bool = False
    """Refuse (flag ``uncalibrated``) MSs without a valid calibration (``calibration.enabled``):
    raw visibilities are not janskys."""

    @classmethod
    def from_config(cls, config: Config) -> PhotometrySettings:
        photometry = config.photometry
        return cls(
            beam=configured_beam(config.beam),
            uv_min_lambda=photometry.uv_min_lambda,
            uv_max_lambda=(
                math.inf if photometry.uv_max_lambda is None else photometry.uv_max_lambda
            ),
            systematic_fraction=photometry.systematic_fraction,
            refine_min_snr=photometry.refine_min_snr,
            require_calibration=config.calibration.enabled,
        )
