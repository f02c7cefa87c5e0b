"""Issue #18's imaging acceptance harness, shared by the acceptance test (one seed, held to the
criteria: ``tests/unit/science/imaging/test_acceptance.py``) and the benchmark over seeds
(``bench/science_imaging.py``): a block of three chunks at small scale (simulate -> convert
-> wsclean per chunk -> mosaic -> Aegean -> catalog match, ``pipeline.imaging
.image_and_search``) with uncatalogued transients and a faint population, and its judgement
against the simulator's truth.json."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.coordinates import SkyCoord

from dsa110d.config import ProcessorConfig
from dsa110d.science.catalog import Catalog, write_catalog
from dsa110d.science.conversion.convert import convert_set
from dsa110d.science.imaging.chunk import wcs_of
from dsa110d.science.imaging.finder import SIDELOBE_RADIUS_ARCMIN, SIDELOBE_RATIO
from dsa110d.science.imaging.mosaic import Mosaic
from dsa110d.science.pipeline.blocks import BlockPlan
from dsa110d.science.pipeline.imaging import image_and_search
from dsa110d.science.pipeline.stage import BlockJob
from dsa110d.science.simulation.simulate import SimulationSpec, simulate, sky_catalog
from tests.helpers.truth import catalog_of
from tests.unit.science.conftest import config_under

START = datetime(2026, 3, 20, 7, 0, 0, tzinfo=UTC)
DEC_DEG = 60.0
CHUNKS = 3
SUBBANDS_PER_SET = 16
TRANSIENTS = 24
TRANSIENT_FLUX_JY = (0.015, 0.08)
"""Transients from ~10 to ~60 sigma in a mosaic of ~1.2 mJy noise (small scale, 3 chunks)."""
IMAGE: dict[str, Any] = {"size_px": 768, "scale_arcsec": 4.0}
"""768 x 4 arcsec (0.85 deg) per chunk: the chunks' images overlap along the track. Pixels of
~1/6 of the beam's minor axis (~23 arcsec here): at 8 arcsec (under 3 pixels across it)
wsclean fits the PSF a ~100 arcsec major axis instead of ~70, the restored sources and the
uncleaned residuals then differ in shape from the header's beam, and Aegean, fitting that
beam, ran 10-15 % low (6 of 9 catalog fits within tolerance; 9 of 9 and 12 of 12 at 4)."""

CATALOG_FLUX_JY = (0.02, 0.5)
CATALOG_RA_MARGIN_DEG = 0.3
CATALOG_DEC_HALFWIDTH_DEG = 0.35
CATALOG_SOURCES = 16
FAINT_SCALE = 0.00625
"""0.6 % of the real 2-20 mJy counts (~20 sources here). Completeness over seeds is measured
by ``bench/science_imaging.py`` (the acceptance test holds one seed to the criteria): at 8
arcsec pixels 18 of 21 (86 %); at 4 arcsec 11 of 11 for seed 11, and the misses elsewhere are
transients blended with a neighbour (one component fitted ~40 arcsec off) or fitted just
under the 9-sigma threshold at 10-11 sigma true."""

DETECTABLE_SIGMA = 10.0
POSITION_BEAM_FRACTION = 0.2
FLUX_REL_TOL = 0.10
FLUX_SIGMA_TOL = 3.0
TRUTH_MATCH_BEAMS = 1.0
"""A detection within one beam (major axis) of a true source is that source, not false."""
EDGE_BEAMS = 2.0
"""Sources within this many beams (major axis) of the mosaic's edge are not judged."""


@dataclass
class Block:
    ms: list[Path]
    truth: dict[str, Any]
    catalog: Catalog
    mosaic: Mosaic
    found: pd.DataFrame
    chunk_images: list[Path]


def convert_chunks(files: list[Path], root: Path, chunks: int) -> list[Path]:
    """The first ``chunks`` sets of ``files`` (SUBBANDS_PER_SET each, by name) converted to
    ``root/chunk<i>.ms``."""
    ordered = sorted(files, key=lambda p: p.name)
    ms = []
    for i in range(chunks):
        path = root / f"chunk{i}.ms"
        convert_set(ordered[SUBBANDS_PER_SET * i : SUBBANDS_PER_SET * (i + 1)], path)
        ms.append(path)
    return ms


def make_block(
    root: Path, seed: int, diffuse: bool | None = None, image: dict[str, Any] | None = None
) -> Block:
    """Simulate, convert, image, mosaic and search one block under ``root`` (``diffuse``:
    None, the simulator's default; else on or off; ``image``: the imaging settings, IMAGE
    unless given)."""
    extra: dict[str, Any] = {} if diffuse is None else {"diffuse": diffuse}
    spec = SimulationSpec(
        out=root / "in", start=START, sets=CHUNKS, scale="small", seed=seed, dec_deg=DEC_DEG,
        corrupt="none", variable_fraction=0.0, transients=TRANSIENTS,
        transient_flux_range_jy=TRANSIENT_FLUX_JY, faint_per_deg2=FAINT_SCALE,
        n_sources=CATALOG_SOURCES, **extra,
    )  # fmt: skip
    # The catalog's sky stays inside the imaged strip: the small test images (0.85 deg)
    # cannot clean the sidelobes of Jy sources beyond them (the real configuration images
    # the whole primary beam).
    sky = sky_catalog(spec, CATALOG_FLUX_JY, CATALOG_RA_MARGIN_DEG, CATALOG_DEC_HALFWIDTH_DEG)
    write_catalog(root / "sky.csv", sky)
    spec = dataclasses.replace(spec, catalog=root / "sky.csv")
    result = simulate(spec)
    ms = convert_chunks(result.files, root, CHUNKS)
    assert result.truth_path is not None
    truth = json.loads(result.truth_path.read_text())
    catalog = catalog_of(truth["sources"])
    write_catalog(root / "catalog.csv", catalog)
    config = config_under(root, catalog=root / "catalog.csv")
    config = config.model_copy(update={"imaging": config.imaging.model_copy(update=image or IMAGE)})
    job = BlockJob(BlockPlan.from_config(ProcessorConfig()).block(0))
    scratch = root / "scratch"
    scratch.mkdir()
    imaged, mosaic, found = image_and_search(job, ms, config, scratch)
    return Block(ms, truth, catalog, mosaic, found, [c.chunk.path for c in imaged])


def beam(mosaic: Mosaic) -> tuple[float, float, float]:
    """The mosaic's restoring beam: major, minor FWHM (arcsec), PA (deg east of north)."""
    h = mosaic.header
    return float(h["BMAJ"]) * 3600, float(h["BMIN"]) * 3600, float(h["BPA"])


def within_beam_fraction(
    ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float,
    shape: tuple[float, float, float], fraction: float,
) -> np.ndarray:  # fmt: skip
    """Offsets inside the ellipse of ``fraction`` x the beam (major, minor FWHM, PA east of
    north) about (ra0, dec0)."""
    bmaj, bmin, bpa = shape
    east = (ra - ra0) * math.cos(math.radians(dec0)) * 3600
    north = (dec - dec0) * 3600
    pa = math.radians(bpa)
    along = east * math.sin(pa) + north * math.cos(pa)
    across = east * math.cos(pa) - north * math.sin(pa)
    return np.asarray((along / (fraction * bmaj)) ** 2 + (across / (fraction * bmin)) ** 2 <= 1)


def noise_at(mosaic: Mosaic, ra: float, dec: float) -> float:
    """The mosaic's noise at a direction; NaN off the mosaic or within EDGE_BEAMS of its edge
    (an island cut by the edge is not a fair test of the finder)."""
    x, y = wcs_of(mosaic.header).world_to_pixel_values(ra, dec)
    ix, iy = round(float(x)), round(float(y))
    margin = math.ceil(EDGE_BEAMS * float(mosaic.header["BMAJ"]) / abs(mosaic.header["CDELT2"]))
    ny, nx = mosaic.noise.shape
    if not (margin <= iy < ny - margin and margin <= ix < nx - margin):
        return math.nan
    window = mosaic.noise[iy - margin : iy + margin + 1, ix - margin : ix + margin + 1]
    return float(mosaic.noise[iy, ix]) if np.isfinite(window).all() else math.nan


@dataclass(frozen=True)
class Completeness:
    """The transients at >= DETECTABLE_SIGMA in every chunk, away from the edge: how many
    were found as new sources within POSITION_BEAM_FRACTION of the beam, how many were
    judged, how many were left out inside a brighter catalog source's sidelobe veto zone
    (``finder.SIDELOBE_*``: the finder declines them by design), and the missed ones (id,
    signal-to-noise, the nearest detection's fit)."""

    found: int
    detectable: int
    vetoed: int
    missed: list[dict[str, Any]]


def completeness(block: Block) -> Completeness:
    shape = beam(block.mosaic)
    new = block.found[block.found["new_source"]]
    known = SkyCoord(block.catalog.ra_deg, block.catalog.dec_deg, unit="deg")
    detectable = found = vetoed = 0
    missed = []
    for t in block.truth["uncatalogued"]:
        if t["kind"] == "faint":
            continue
        noise = noise_at(block.mosaic, t["ra_deg"], t["dec_deg"])
        if not min(t["flux_per_set_jy"]) >= DETECTABLE_SIGMA * noise:
            continue  # off, or below 10 sigma, in some chunk: not required
        here = SkyCoord(t["ra_deg"], t["dec_deg"], unit="deg")
        near = here.separation(known).arcmin <= SIDELOBE_RADIUS_ARCMIN
        if np.any(near & (block.catalog.flux_jy >= SIDELOBE_RATIO * max(t["flux_per_set_jy"]))):
            vetoed += 1
            continue
        detectable += 1
        hit = within_beam_fraction(
            new.ra_deg.to_numpy(), new.dec_deg.to_numpy(), t["ra_deg"], t["dec_deg"], shape,
            POSITION_BEAM_FRACTION,
        )  # fmt: skip
        if hit.any():
            found += 1
            continue
        miss: dict[str, Any] = {"id": t["id"], "snr": round(min(t["flux_per_set_jy"]) / noise, 1)}
        if len(block.found):
            seen = SkyCoord(block.found.ra_deg.to_numpy(), block.found.dec_deg.to_numpy(),
                            unit="deg")  # fmt: skip
            nearest = int(np.argmin(here.separation(seen).arcsec))
            row = block.found.iloc[nearest]
            miss |= {
                "nearest_arcsec": round(float(here.separation(seen[nearest]).arcsec), 1),
                "its_snr": round(float(row.snr), 1), "catalog_id": row.catalog_id,
                "near_edge": bool(row.near_edge), "near_bright": bool(row.near_bright),
                "a": round(float(row.a_arcsec)), "b": round(float(row.b_arcsec)),
            }  # fmt: skip
        missed.append(miss)
    return Completeness(found, detectable, vetoed, missed)


def false_new(block: Block) -> int:
    """New sources more than TRUTH_MATCH_BEAMS from anything the truth lists (printed)."""
    truth = [*block.truth["sources"], *block.truth["uncatalogued"]]
    every = SkyCoord([s["ra_deg"] for s in truth], [s["dec_deg"] for s in truth], unit="deg")
    new = block.found[block.found["new_source"]]
    if new.empty:
        return 0
    seen = SkyCoord(new.ra_deg.to_numpy(), new.dec_deg.to_numpy(), unit="deg")
    _, separation, _ = seen.match_to_catalog_sky(every)
    false = separation.arcsec > TRUTH_MATCH_BEAMS * beam(block.mosaic)[0]
    if false.any():
        print(new[false][["ra_deg", "dec_deg", "peak_jy", "snr", "a_arcsec", "b_arcsec"]])
    return int(false.sum())
