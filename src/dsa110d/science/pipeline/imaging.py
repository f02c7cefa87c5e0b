"""The optional ``image`` stage: chunk images, the block mosaic, blind source finding.

Each chunk (MS) is imaged on its own by wsclean about its own phase centre (the meridian at
its mid-time, in ICRS); the images are combined into a primary-beam weighted mosaic with a
noise map and a beam-response map (``science.imaging.mosaic``); Aegean finds the sources in
it, and each is matched to the reference catalog (``paths.catalog``): an unmatched
significant one is a new source. Outputs, under ``results_dir`` (the processor publishes
them fenced with the run's version and token, like every block result):

- ``images/<block>.chunkNN.fits``: each chunk's image (Stokes I, Jy/beam, apparent sky),
  made now or, when one was made from the same data with the same parameters (the fast
  search's, an earlier run's), reused (``science.imaging.reuse``; the summary's
  ``chunks_imaged`` counts those made now);
- ``images/<block>.mosaic.fits``, ``.rms.fits``, ``.pb.fits``: the mosaic (beam-corrected),
  its 1-sigma noise and primary-beam response; ``images/<block>.png``: a quick-look;
- ``sources/<block>.parquet``: the detections (``finder.SOURCE_COLUMNS``);
- ``candidates/<block>.parquet``: the new sources first detected in this block, with the
  5-sigma limits and the mosaic's value at their positions in up to ``EARLIER_BLOCKS``
  earlier published mosaics (``science.imaging.candidates``; ``earlier_upper_limits`` as
  JSON text). The processor then puts them on the monitored list
  (``services.monitoring``): forced photometry measures them in every later block and in
  the earlier blocks, re-run.

When ``wsclean`` is not on PATH the stage reports ``skipped``: imaging is optional.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from dsa110d.config import Config, ImagingConfig
from dsa110d.science.atomic import STAGING_DIR, atomic_file, newest_fenced, unfenced
from dsa110d.science.catalog import read_catalog
from dsa110d.science.imaging.candidates import BlockSources, candidates
from dsa110d.science.imaging.chunk import wcs_of, wsclean_available
from dsa110d.science.imaging.finder import find_sources, match_catalog
from dsa110d.science.imaging.mosaic import Mosaic, build_mosaic, quicklook_png, write_fits
from dsa110d.science.imaging.reuse import Imaged, cache_dir, image_chunk_once, prune
from dsa110d.science.imaging.settings import finder_params, imaging_params
from dsa110d.science.pipeline.stage import BlockJob, StageResult

log = logging.getLogger(__name__)

EARLIER_BLOCKS = 24
"""Earlier blocks (a day of hours) searched for a new source's non-detections."""
MIN_PIXELS_ACROSS_BEAM = 4.0
"""Fewer pixels than this across the restoring beam's minor axis undersample it: wsclean then
fits the PSF a wider beam (~100 arcsec major instead of ~70 on the small-scale array at 8
arcsec pixels, 3 across its 23 arcsec minor axis), the restored sources and the uncleaned
residuals differ in shape from the header's beam, and Aegean's fits of that beam ran 10-15 %
low. The stage warns (``imaging.scale_arcsec`` is the operator's to set)."""


def image_and_search(
    job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
) -> tuple[list[Imaged], Mosaic, pd.DataFrame]:
    """Chunk images (each made now or reused, ``science.imaging.reuse``), the mosaic and its
    matched source list (nothing published)."""
    params = imaging_params(config.imaging)
    cache = cache_dir(config.paths.results_dir)
    imaged = [
        image_chunk_once(Path(ms), params, cache, scratch / f"chunk{i:02d}")
        for i, ms in enumerate(ms_paths)
    ]
    prune(cache)
    mosaic = build_mosaic([c.chunk for c in imaged])
    across = float(mosaic.header["BMIN"]) * 3600.0 / config.imaging.scale_arcsec
    if across < MIN_PIXELS_ACROSS_BEAM:
        log.warning(
            "block %s: %.1f pixels across the beam's minor axis (%.1f arcsec): "
            "imaging.scale_arcsec %.1f undersamples it; the finder's fluxes run low",
            job.block_id, across, float(mosaic.header["BMIN"]) * 3600.0,
            config.imaging.scale_arcsec,
        )  # fmt: skip
    finder = finder_params(config.imaging)
    found = find_sources(mosaic, scratch, finder)
    if config.paths.catalog is not None:
        catalog = read_catalog(config.paths.catalog)
        beam = float(mosaic.header["BMAJ"]), float(mosaic.header["BMIN"])
        found = match_catalog(found, catalog, beam[0], finder, beam_minor_deg=beam[1])
    else:
        found = found.assign(
            catalog_id="", separation_arcsec=math.nan, near_bright=False, new_source=False
        )
    found.insert(0, "version", job.version)
    found.insert(0, "block_id", job.block_id)
    return imaged, mosaic, found


def image_stage(
    job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
) -> StageResult:
    """Image, mosaic and search the block when wsclean is installed; else skipped."""
    if not wsclean_available(config.imaging.wsclean):
        return StageResult("image", "skipped", message="wsclean is not on PATH")
    if not ms_paths:
        return StageResult("image", "skipped", message="no chunks to image")
    imaged, mosaic, found = image_and_search(job, ms_paths, config, scratch)
    chunk_images = [c.chunk.path for c in imaged]
    images = config.paths.results_dir / "images"
    block = job.block_id
    outputs: dict[str, str] = {}
    for i, path in enumerate(chunk_images):
        final = images / f"{block}.chunk{i:02d}.fits"
        with atomic_file(final) as temp:
            shutil.copyfile(path, temp)
        outputs[f"chunk{i:02d}"] = str(final)
    for kind, data, unit in (
        ("mosaic", mosaic.image, "JY/BEAM"),
        ("rms", mosaic.noise, "JY/BEAM"),
        ("pb", mosaic.response, ""),
    ):
        final = images / f"{block}.{kind}.fits"
        with atomic_file(final) as temp:
            write_fits(temp, data, mosaic.header, unit)
        outputs[kind] = str(final)
    png = images / f"{block}.png"
    with atomic_file(png) as temp:
        quicklook_png(mosaic, temp, _new_pixels(mosaic, found))
    outputs["quicklook"] = str(png)
    table = config.paths.results_dir / "sources" / f"{block}.parquet"
    with atomic_file(table) as temp:
        found.to_parquet(temp, index=False)
    outputs["sources"] = str(table)
    rms_here = Path(outputs["rms"])
    firsts = new_candidates(config.paths.results_dir, block, found, rms_here, config.imaging)
    cand = config.paths.results_dir / "candidates" / f"{block}.parquet"
    with atomic_file(cand) as temp:
        firsts.to_parquet(temp, index=False)
    outputs["candidates"] = str(cand)
    rms = float(np.nanmedian(mosaic.noise))
    return StageResult(
        "image",
        "ok",
        outputs=outputs,
        summary={
            "chunks": len(chunk_images),
            "chunks_imaged": sum(c.made for c in imaged),
            "sources": len(found),
            "new_sources": int(found["new_source"].sum()),
            "mosaic_rms_jy": rms,
            "version": job.version,
        },
    )


def earlier_blocks(results_dir: Path, block_id: str) -> list[BlockSources]:
    """The newest published source list and noise map of up to EARLIER_BLOCKS blocks before
    ``block_id`` (block ids sort in time), oldest first. A processor run writes into
    ``<results>/.staging/<run>``: the published results are two levels up."""
    if results_dir.parent.name == STAGING_DIR:
        results_dir = results_dir.parent.parent
    sources_dir, images_dir = results_dir / "sources", results_dir / "images"
    if not sources_dir.is_dir():
        return []
    names = newest_fenced([p.name for p in sources_dir.glob("*.parquet")])
    rms_names = {
        unfenced(n)[0]: n for n in newest_fenced([p.name for p in images_dir.glob("*.rms*.fits")])
    }
    out = []
    for name in names:
        base = unfenced(name)[0]
        earlier = base.removesuffix(".parquet")
        rms = rms_names.get(f"{earlier}.rms.fits")
        if earlier < block_id and rms is not None:
            mosaic = images_dir / rms.replace(".rms.", ".mosaic.", 1)
            sources = pd.read_parquet(sources_dir / name)
            out.append(BlockSources(earlier, sources, images_dir / rms, mosaic))
    return sorted(out, key=lambda b: b.block_id)[-EARLIER_BLOCKS:]


def new_candidates(
    results_dir: Path, block_id: str, found: pd.DataFrame, rms: Path, cfg: ImagingConfig
) -> pd.DataFrame:
    """The candidates first detected in this block (see ``science.imaging.candidates``)."""
    blocks = [*earlier_blocks(results_dir, block_id), BlockSources(block_id, found, rms)]
    radius = cfg.match_radius_beams * float(fits.getheader(rms)["BMAJ"]) * 3600.0
    table = candidates(blocks, radius)
    table = table[table.first_block == block_id].reset_index(drop=True)
    table["earlier_upper_limits"] = [json.dumps(v) for v in table["earlier_upper_limits"]]
    return table


def _new_pixels(mosaic: Mosaic, found: pd.DataFrame) -> tuple[np.ndarray, ...]:
    new = found[found["new_source"]]
    if new.empty:
        return ()
    x, y = wcs_of(mosaic.header).world_to_pixel_values(
        new.ra_deg.to_numpy(), new.dec_deg.to_numpy()
    )
    return np.asarray(x), np.asarray(y)
