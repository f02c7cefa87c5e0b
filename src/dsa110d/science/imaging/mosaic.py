"""A block's mosaic: its chunk images on one grid, combined with primary-beam weights.

Each chunk image I_i is the apparent sky B_i S (+ noise of rms sigma_i), B_i the chunk's
primary beam averaged over its pointing track (the meridian moves ~1.3 deg in RA in a chunk)
and over its band. On a common SIN grid covering every chunk image (astropy ``reproject``,
bicubic), the optimal (inverse-variance) estimate of S is

    M = sum_i w_i B_i I_i / sum_i w_i B_i^2,     w_i = 1 / sigma_i^2,

with noise 1 / sqrt(sum_i w_i B_i^2) (the rms map) and the primary-beam response map
sqrt(sum_i w_i B_i^2 / sum_i w_i) (the beam of the combined data, 1 on the track). Pixels
where every chunk's beam is below ``PB_CUTOFF`` are blank (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from numpy.typing import NDArray

from dsa110d.errors import StageError
from dsa110d.science.beam import angular_offset_rad, primary_beam
from dsa110d.science.imaging.chunk import ChunkImage, beam_of, read_plane, robust_rms, wcs_of

PB_CUTOFF = 0.1
"""Primary-beam response below which a chunk does not contribute to a pixel."""
BEAM_TABLE_MAX_RAD = math.radians(10.0)
BEAM_TABLE_POINTS = 4000
"""The band-averaged beam is tabulated in offset to this radius with this many points."""


@dataclass(frozen=True)
class Mosaic:
    image: NDArray[np.float64]
    """Primary-beam corrected sky, Jy/beam (NaN where blank)."""
    noise: NDArray[np.float64]
    """1-sigma noise, Jy/beam."""
    response: NDArray[np.float64]
    """Primary-beam response of the combined data (0..1)."""
    header: fits.Header
    """2-D celestial WCS plus the restoring beam (BMAJ/BMIN/BPA) and frequency."""
    chunk_rms: tuple[float, ...]
    """Each chunk image's noise (Jy/beam, apparent)."""


def celestial_header(header: fits.Header) -> fits.Header:
    """The 2-D celestial part of an image header (wsclean's has FREQ and STOKES axes)."""
    return wcs_of(header).celestial.to_header()


def mosaic_grid(headers: Sequence[fits.Header]) -> tuple[WCS, tuple[int, int]]:
    """A SIN grid at the chunks' pixel scale, centred between them, covering every image."""
    from reproject.mosaicking import find_optimal_celestial_wcs

    inputs = [((int(h["NAXIS2"]), int(h["NAXIS1"])), wcs_of(celestial_header(h))) for h in headers]
    scale = abs(float(headers[0]["CDELT2"]))
    wcs, shape = find_optimal_celestial_wcs(inputs, projection="SIN", resolution=scale * u.deg)
    return wcs, (int(shape[0]), int(shape[1]))


def band_beam(freq_hz: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(offset rad, beam averaged over ``freq_hz``): a table to interpolate."""
    offsets = np.linspace(0.0, BEAM_TABLE_MAX_RAD, BEAM_TABLE_POINTS)
    beam = primary_beam(offsets[:, None], freq_hz[None, :]).mean(axis=1)
    return offsets, np.asarray(beam, dtype=np.float64)


def chunk_beam(
    chunk: ChunkImage, ra: NDArray[np.float64], dec: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The chunk's primary beam at ICRS directions (rad), averaged over track and band."""
    offsets, table = band_beam(chunk.freq_hz)
    total = np.zeros(ra.shape)
    for p_ra, p_dec in zip(chunk.pointing_ra, chunk.pointing_dec, strict=True):
        offset = angular_offset_rad(p_ra, p_dec, ra, dec)
        total += np.interp(offset, offsets, table, right=0.0)
    return np.asarray(total / chunk.pointing_ra.size, dtype=np.float64)


def build_mosaic(chunks: Sequence[ChunkImage]) -> Mosaic:
    """Combine the chunk images (see the module docstring)."""
    from reproject import reproject_interp

    if not chunks:
        raise StageError("no chunk images to mosaic")
    planes = [read_plane(c.path) for c in chunks]
    wcs, shape = mosaic_grid([h for _, h in planes])
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    ra_deg, dec_deg = wcs.pixel_to_world_values(xx, yy)
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    num = np.zeros(shape)
    den = np.zeros(shape)
    wsum = np.zeros(shape)
    rms: list[float] = []
    beams = []
    for chunk, (data, header) in zip(chunks, planes, strict=True):
        sigma = robust_rms(data)
        rms.append(sigma)
        if not math.isfinite(sigma) or sigma <= 0:
            continue  # an empty image adds nothing
        beams.append(beam_of(header))
        on_grid, footprint = reproject_interp(
            (data, wcs_of(celestial_header(header))), wcs, shape_out=shape, order="bicubic"
        )
        gain = chunk_beam(chunk, ra, dec)
        use = (footprint > 0.5) & np.isfinite(on_grid) & (gain >= PB_CUTOFF)
        weight = np.where(use, 1.0 / sigma**2, 0.0)
        num += weight * gain * np.where(use, on_grid, 0.0)
        den += weight * gain**2
        wsum += weight
    if not beams:
        raise StageError("every chunk image is empty")
    covered = den > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        image = np.where(covered, num / den, np.nan)
        noise = np.where(covered, 1.0 / np.sqrt(den), np.nan)
        response = np.where(covered, np.sqrt(den / wsum), 0.0)
    header = wcs.to_header()
    bmaj, bmin, bpa = (float(np.median([b[i] for b in beams])) for i in range(3))
    header["BMAJ"], header["BMIN"], header["BPA"] = bmaj, bmin, bpa
    header["BUNIT"] = "JY/BEAM"
    header["FREQ"] = (float(np.mean(chunks[0].freq_hz)), "Hz, band centre")
    header["NCHUNKS"] = (len(beams), "chunk images combined")
    return Mosaic(image, noise, response, header, tuple(rms))


def write_fits(path: Path, data: NDArray[np.float64], header: fits.Header, unit: str) -> None:
    out = header.copy()
    out["BUNIT"] = unit
    fits.PrimaryHDU(data=data.astype(np.float32), header=out).writeto(path, overwrite=True)


def quicklook_png(mosaic: Mosaic, png: Path, sources: tuple[NDArray[np.float64], ...] = ()) -> None:
    """A grey-scale PNG of the mosaic in units of its noise (-3..+10 sigma), RA/Dec axes;
    ``sources`` optional (x, y) pixel arrays circled."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    snr = mosaic.image / mosaic.noise
    figure = plt.figure(figsize=(8, 5), dpi=100)
    try:
        axes = figure.add_subplot(projection=wcs_of(mosaic.header))
        axes.imshow(snr, origin="lower", cmap="gray_r", vmin=-3, vmax=10)
        if len(sources) == 2:
            axes.scatter(sources[0], sources[1], s=80, facecolors="none", edgecolors="red")
        axes.set_xlabel("RA (ICRS)")
        axes.set_ylabel("Dec (ICRS)")
        figure.savefig(png, format="png", bbox_inches="tight")
    finally:
        plt.close(figure)
