"""One chunk's image: wsclean on the MS, Stokes I, with a full WCS and the beam in the header.

wsclean images CORRECTED_DATA when the calibrate stage wrote it, else DATA. The w-gridder
(``-use-wgridder``) is the one accurate for these data: wsclean 3.1's default w-stacking
gridder diverges on them. The image is the apparent sky (not primary-beam corrected); the
mosaic applies the beam. The chunk's primary beam is also described here: where the dishes
pointed during the chunk (the POINTING table the converter writes) and the band it covers.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from casacore import tables
from numpy.typing import NDArray

from dsa110d.errors import StageError
from dsa110d.science.conversion.msio import read_pointing

WSCLEAN = "wsclean"
WSCLEAN_TIMEOUT_SEC = 1800.0
BEAM_TRACK_SAMPLES = 9
"""Pointings (over the chunk's time) the chunk's time-averaged primary beam is taken at."""
BEAM_FREQ_SAMPLES = 8
"""Frequencies (across the band) the chunk's band-averaged primary beam is taken at."""


@dataclass(frozen=True)
class ImagingParams:
    """What wsclean is asked for (``imaging.*`` in the configuration)."""

    size_px: int = 512
    scale_arcsec: float = 8.0
    weighting: str = "briggs"
    robust: float = 0.0
    niter: int = 10000
    mgain: float = 0.8
    auto_threshold: float = 1.0
    """Clean down to this many times the residual's noise, inside the mask: deep, so every
    detectable source is restored with the fitted beam (a shallow clean leaves fainter
    sources in the sparse snapshot PSF, narrower than the header's beam, and a finder that
    fits the header's beam splits and misplaces them)."""
    auto_mask: float = 4.0
    """The clean mask grows from peaks above this many times the noise."""
    threads: int = 1
    min_uv_lambda: float = 0.0
    """Baselines shorter than this (wavelengths) are not imaged (wsclean ``-minuv-l``); 0: all."""
    program: str = WSCLEAN
    """The wsclean to run: a name on PATH or a path (``imaging.wsclean``)."""


@dataclass(frozen=True)
class ChunkImage:
    """A chunk's image and what its primary beam needs: the pointing track and band."""

    path: Path
    pointing_ra: NDArray[np.float64]
    """ICRS RA (rad) of the pointing at a few times over the chunk."""
    pointing_dec: NDArray[np.float64]
    freq_hz: NDArray[np.float64]
    """A few frequencies spanning the imaged band."""


def data_column(ms: Path) -> str:
    """CORRECTED_DATA when the MS has it (calibrated), else DATA."""
    with tables.table(str(ms), ack=False) as table:
        return "CORRECTED_DATA" if "CORRECTED_DATA" in table.colnames() else "DATA"


def wsclean_command(ms: Path, prefix: Path, params: ImagingParams, column: str) -> list[str]:
    weight = [params.weighting] + ([f"{params.robust:g}"] if params.weighting == "briggs" else [])
    return [
        params.program, "-quiet", "-name", str(prefix),
        "-size", str(params.size_px), str(params.size_px),
        "-scale", f"{params.scale_arcsec:g}asec", "-pol", "I", "-use-wgridder",
        "-data-column", column, "-weight", *weight,
        "-niter", str(params.niter), "-mgain", f"{params.mgain:g}",
        "-auto-threshold", f"{params.auto_threshold:g}", "-auto-mask", f"{params.auto_mask:g}",
        "-no-update-model-required", "-j", str(params.threads),
        *(["-minuv-l", f"{params.min_uv_lambda:g}"] if params.min_uv_lambda > 0 else []), str(ms),
    ]  # fmt: skip


def wsclean_reason(output: str) -> str:
    """wsclean's last line that says something: it frames an exception in rows of ``+``
    (``+ An exception occured:`` / ``+ >>> <the reason>``), which a last line would miss."""
    said = [line.strip().lstrip("+> ").strip() for line in output.splitlines()]
    said = [line for line in said if line and line != "An exception occured:"]
    return said[-1] if said else "no output"


def wsclean_available(program: str = WSCLEAN) -> bool:
    return shutil.which(program) is not None


def image_chunk(
    ms: Path, prefix: Path, params: ImagingParams, column: str | None = None
) -> ChunkImage:
    """Run wsclean on one MS (on ``column``, by default :func:`data_column`'s); the restored
    image is ``<prefix>-image.fits``."""
    command = wsclean_command(ms, prefix, params, column or data_column(ms))
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=WSCLEAN_TIMEOUT_SEC, check=False
        )
    except subprocess.TimeoutExpired:
        raise StageError(f"wsclean took longer than {WSCLEAN_TIMEOUT_SEC:g} s on {ms}") from None
    image = prefix.with_name(prefix.name + "-image.fits")
    if done.returncode != 0 or not image.is_file():
        reason = wsclean_reason(done.stderr or done.stdout)
        raise StageError(f"wsclean failed on {ms.name} (exit {done.returncode}): {reason}")
    for other in prefix.parent.glob(prefix.name + "-*.fits"):
        if other != image:
            other.unlink()  # dirty, residual, model, psf: not kept
    return ChunkImage(image, *chunk_beam(ms))


def chunk_beam(
    ms: Path,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """What the chunk's primary beam needs: its pointing track (RA, Dec) and band."""
    ra, dec = _pointing_track(ms)
    return ra, dec, _band(ms)


def _pointing_track(ms: Path) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A few pointings over the chunk: the POINTING table's, or the FIELD centre alone."""
    _, direction = read_pointing(ms)
    if direction.shape[0] == 0:
        with tables.table(f"{ms}::FIELD", ack=False) as field:
            centre = np.asarray(field.getcol("PHASE_DIR"))[0, 0]
        return np.array([centre[0]]), np.array([centre[1]])
    pick = np.linspace(0, direction.shape[0] - 1, BEAM_TRACK_SAMPLES).round().astype(int)
    ra = np.unwrap(direction[:, 0])[pick]
    return np.asarray(ra, dtype=np.float64), np.asarray(direction[pick, 1], dtype=np.float64)


def _band(ms: Path) -> NDArray[np.float64]:
    with tables.table(f"{ms}::SPECTRAL_WINDOW", ack=False) as spw:
        freq = np.asarray(spw.getcol("CHAN_FREQ")[0], dtype=np.float64)
    return np.linspace(freq.min(), freq.max(), BEAM_FREQ_SAMPLES)


def read_plane(path: Path) -> tuple[NDArray[np.float64], fits.Header]:
    """The image's first (Stokes I, MFS) plane and its header."""
    with fits.open(path) as hdus:
        data = np.asarray(hdus[0].data, dtype=np.float64)
        header = hdus[0].header.copy()
    while data.ndim > 2:
        data = data[0]
    return data, header


def wcs_of(header: fits.Header) -> WCS:
    """The header's WCS, without astropy's notes on the keywords it completes (MJD-OBS from
    DATE-OBS and the like: wsclean's headers are standard)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def beam_of(header: fits.Header) -> tuple[float, float, float]:
    """(BMAJ, BMIN deg, BPA deg) of the restoring beam in the header."""
    try:
        return float(header["BMAJ"]), float(header["BMIN"]), float(header["BPA"])
    except KeyError:
        raise StageError("image header has no restoring beam (BMAJ/BMIN/BPA)") from None


def robust_rms(values: NDArray[np.float64]) -> float:
    """Noise (Jy/beam) of an image: 1.4826 x the median absolute deviation of finite pixels."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan
    return float(1.4826 * np.median(np.abs(finite - np.median(finite))))
