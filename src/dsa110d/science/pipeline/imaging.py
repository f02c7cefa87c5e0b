"""The optional ``image`` stage: a wsclean image of the block and a PNG quick-look.

When ``wsclean`` is not on PATH the stage reports ``skipped``: imaging is optional and its
absence is not an error. The image is a dirty-ish quick-look (a few hundred clean
iterations) about the first MS's phase centre; outputs go to ``results/images/<block_id>``.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from dsa110d.config import Config
from dsa110d.errors import StageError
from dsa110d.science.atomic import atomic_file
from dsa110d.science.pipeline.stage import BlockJob, StageResult

log = logging.getLogger(__name__)

WSCLEAN = "wsclean"
IMAGE_SIZE_PX = 1024
"""Image side, pixels: with IMAGE_SCALE_ARCSEC, ~5.7 deg, twice the primary beam's FWHM."""
IMAGE_SCALE_ARCSEC = 20.0
"""Pixel size, arcsec: a quick-look sampling of the ~1 arcmin synthesised beam."""
CLEAN_ITERATIONS = 500
WSCLEAN_TIMEOUT_SEC = 1800.0
QUICKLOOK_PERCENTILES = (1.0, 99.5)
"""Colour scale of the PNG, percentiles of the pixel values."""


def image_block(
    ms_paths: Sequence[Path],
    scratch: Path,
    *,
    size_px: int = IMAGE_SIZE_PX,
    scale_arcsec: float = IMAGE_SCALE_ARCSEC,
    niter: int = CLEAN_ITERATIONS,
) -> Path:
    """Run wsclean on the MSs; returns the FITS image in ``scratch``."""
    prefix = scratch / "block"
    command = [
        WSCLEAN, "-quiet", "-name", str(prefix), "-size", str(size_px), str(size_px),
        "-scale", f"{scale_arcsec}asec", "-niter", str(niter), "-weight", "briggs", "0",
        "-no-update-model-required", "-j", "1", *map(str, ms_paths),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=WSCLEAN_TIMEOUT_SEC, check=False
        )
    except subprocess.TimeoutExpired:
        raise StageError(f"wsclean took longer than {WSCLEAN_TIMEOUT_SEC:g} s") from None
    image = prefix.with_name(prefix.name + "-image.fits")
    if done.returncode != 0 or not image.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StageError(f"wsclean failed (exit {done.returncode}): {tail[0]}")
    return image


def quicklook_png(image: Path, png: Path) -> None:
    """Write a grey-scale PNG of the FITS image's first plane."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    with fits.open(image) as hdus:
        pixels = np.squeeze(np.asarray(hdus[0].data, dtype=np.float64))
    while pixels.ndim > 2:
        pixels = pixels[0]
    lo, hi = np.nanpercentile(pixels, QUICKLOOK_PERCENTILES)
    figure = plt.figure(figsize=(6, 6), dpi=100)
    try:
        axes = figure.add_axes((0, 0, 1, 1))
        axes.imshow(pixels, origin="lower", cmap="gray", vmin=lo, vmax=hi)
        axes.set_axis_off()
        figure.savefig(png, format="png")
    finally:
        plt.close(figure)


def image_stage(
    job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
) -> StageResult:
    """Image the block when wsclean is installed; otherwise report skipped."""
    if shutil.which(WSCLEAN) is None:
        return StageResult("image", "skipped", message="wsclean is not on PATH")
    image = image_block(ms_paths, scratch)
    out_dir = config.paths.results_dir / "images"
    fits_final, png_final = out_dir / f"{job.block_id}.fits", out_dir / f"{job.block_id}.png"
    with atomic_file(fits_final) as temp:
        shutil.copyfile(image, temp)
    with atomic_file(png_final) as temp:
        quicklook_png(image, temp)
    return StageResult(
        "image", "ok", outputs={"image": str(fits_final), "quicklook": str(png_final)}
    )
