"""Issue #18's acceptance on simulated data: a block of three chunks (simulate -> convert ->
wsclean per chunk -> mosaic -> Aegean -> catalog match) against the simulator's truth file.

- injected uncatalogued transients at >= 10 sigma in the mosaic are found as new sources in
  >= 90 % of cases, within a fifth of the synthesized beam;
- <= 1 false new source (a detection of nothing the truth lists) per block;
- catalog sources' mosaic fluxes, and Aegean's fitted peaks, within 10 % (or 3 sigma) of the
  truth; the old image stage's missing primary-beam correction fails that (the control);
- the simulator's extended emission (on with the uncatalogued sky) raises no new source;
- astrometry: bright detections within a fifth of the beam of their true ICRS positions; an MS
  whose FIELD states the apparent meridian as J2000 (the old converter's label, had its data
  been phased there) puts them ~0.4 deg off (the control).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from casacore import tables

from dsa110d.config import ProcessorConfig
from dsa110d.science.catalog import Catalog, write_catalog
from dsa110d.science.conversion.convert import convert_set
from dsa110d.science.imaging.candidates import UPPER_LIMIT_SIGMA, BlockSources, candidates
from dsa110d.science.imaging.chunk import ImagingParams, image_chunk, read_plane, wcs_of
from dsa110d.science.imaging.finder import (
    SIDELOBE_RADIUS_ARCMIN,
    SIDELOBE_RATIO,
    FinderParams,
    find_sources,
)
from dsa110d.science.imaging.mosaic import Mosaic, write_fits
from dsa110d.science.pipeline.blocks import BlockPlan
from dsa110d.science.pipeline.imaging import image_and_search
from dsa110d.science.pipeline.stage import BlockJob
from dsa110d.science.simulation.simulate import SimulationSpec, simulate, sky_catalog
from dsa110d.science.simulation.visibilities import lst_for
from tests.unit.science.conftest import config_under

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
"""The shared block takes ~1.5 min on a quiet machine (simulate, convert, 3 wsclean runs of
768 x 768, mosaic, Aegean): ~5 min at load 15."""

START = datetime(2026, 3, 20, 7, 0, 0, tzinfo=UTC)
DEC_DEG = 60.0
CHUNKS = 3
TRANSIENTS = 24
TRANSIENT_FLUX_JY = (0.015, 0.08)
"""Transients from ~10 to ~60 sigma in a mosaic of ~1.2 mJy noise (small scale, 3 chunks)."""
IMAGE = {"size_px": 768, "scale_arcsec": 4.0}
"""768 x 4 arcsec (0.85 deg) per chunk: the chunks' images overlap along the track. Pixels of
~1/6 of the beam's minor axis (~23 arcsec here): at 8 arcsec (under 3 pixels across it)
wsclean fits the PSF a ~100 arcsec major axis instead of ~70, the restored sources and the
uncleaned residuals then differ in shape from the header's beam, and Aegean, fitting that
beam, ran 10-15 % low (6 of 9 catalog fits within tolerance; 9 of 9 and 12 of 12 at 4)."""

CATALOG_FLUX_JY = (0.02, 0.5)
CATALOG_RA_MARGIN_DEG = 0.3
CATALOG_DEC_HALFWIDTH_DEG = 0.35

DETECTABLE_SIGMA = 10.0
COMPLETENESS = 0.9
POSITION_BEAM_FRACTION = 0.2
MAX_FALSE_NEW = 1
FLUX_REL_TOL = 0.10
FLUX_SIGMA_TOL = 3.0
TRUTH_MATCH_BEAMS = 1.0
"""A detection within one beam (major axis) of a true source is that source, not false."""
WRONG_FIELD_MIN_OFFSET_DEG = 0.2
EDGE_BEAMS = 2.0
"""Sources within this many beams (major axis) of the mosaic's edge are not judged."""
CATALOG_SOURCES = 16
FAINT_SCALE = 0.00625
"""0.6 % of the real 2-20 mJy counts (~20 sources here). Completeness over seeds is measured
by ``bench/science_imaging.py`` (this test holds one seed to the criteria): at 8 arcsec pixels
18 of 21 (86 %); at 4 arcsec 11 of 11 here, and the misses elsewhere are transients blended
with a neighbour (one component fitted ~40 arcsec off) or fitted just under the 9-sigma
threshold at 10-11 sigma true."""


@dataclass
class Block:
    ms: list[Path]
    truth: dict[str, Any]
    catalog: Catalog
    mosaic: Mosaic
    found: pd.DataFrame
    chunk_images: list[Path]


@pytest.fixture(scope="module")
def block(tmp_path_factory: pytest.TempPathFactory) -> Block:
    root = tmp_path_factory.mktemp("acceptance")
    spec = SimulationSpec(
        out=root / "in", start=START, sets=CHUNKS, scale="small", seed=11, dec_deg=DEC_DEG,
        corrupt="none", variable_fraction=0.0, transients=TRANSIENTS,
        transient_flux_range_jy=TRANSIENT_FLUX_JY, faint_per_deg2=FAINT_SCALE,
        n_sources=CATALOG_SOURCES,
    )  # fmt: skip
    # The catalog's sky stays inside the imaged strip: the small test images (0.85 deg)
    # cannot clean the sidelobes of Jy sources beyond them (the real configuration images
    # the whole primary beam).
    sky = sky_catalog(spec, CATALOG_FLUX_JY, CATALOG_RA_MARGIN_DEG, CATALOG_DEC_HALFWIDTH_DEG)
    write_catalog(root / "sky.csv", sky)
    spec = dataclasses.replace(spec, catalog=root / "sky.csv")
    result = simulate(spec)
    files = sorted(result.files, key=lambda p: p.name)
    ms = []
    for i in range(CHUNKS):
        path = root / f"chunk{i}.ms"
        convert_set(files[16 * i : 16 * (i + 1)], path)
        ms.append(path)
    assert result.truth_path is not None
    truth = json.loads(result.truth_path.read_text())
    known = truth["sources"]
    catalog = Catalog(
        tuple(s["id"] for s in known),
        np.array([s["ra_deg"] for s in known]),
        np.array([s["dec_deg"] for s in known]),
        np.array([s["flux_jy"] for s in known]),
    )
    write_catalog(root / "catalog.csv", catalog)
    config = config_under(root, catalog=root / "catalog.csv")
    config = config.model_copy(update={"imaging": config.imaging.model_copy(update=IMAGE)})
    job = BlockJob(BlockPlan.from_config(ProcessorConfig()).block(0))
    scratch = root / "scratch"
    scratch.mkdir()
    imaged, mosaic, found = image_and_search(job, ms, config, scratch)
    return Block(ms, truth, catalog, mosaic, found, [c.chunk.path for c in imaged])


def _beam(mosaic: Mosaic) -> tuple[float, float, float]:
    h = mosaic.header
    return float(h["BMAJ"]) * 3600, float(h["BMIN"]) * 3600, float(h["BPA"])


def _within_beam_fraction(
    ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float, beam: tuple[float, float, float],
    fraction: float,
) -> np.ndarray:  # fmt: skip
    """Offsets inside the ellipse of ``fraction`` x the beam (major, minor FWHM, PA east of
    north) about (ra0, dec0)."""
    bmaj, bmin, bpa = beam
    east = (ra - ra0) * math.cos(math.radians(dec0)) * 3600
    north = (dec - dec0) * 3600
    pa = math.radians(bpa)
    along = east * math.sin(pa) + north * math.cos(pa)
    across = east * math.cos(pa) - north * math.sin(pa)
    return np.asarray((along / (fraction * bmaj)) ** 2 + (across / (fraction * bmin)) ** 2 <= 1)


def _noise_at(mosaic: Mosaic, ra: float, dec: float) -> float:
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


def test_transients_at_10_sigma_are_found_as_new_sources_within_a_fifth_of_the_beam(
    block: Block,
) -> None:
    """Transients in a catalog source's sidelobe veto zone (finder.SIDELOBE_*) are not
    required: the finder declines them by design (counted and printed)."""
    beam = _beam(block.mosaic)
    new = block.found[block.found["new_source"]]
    known = SkyCoord(block.catalog.ra_deg, block.catalog.dec_deg, unit="deg")
    detectable = found = vetoed = 0
    for t in block.truth["uncatalogued"]:
        if t["kind"] == "faint":
            continue
        noise = _noise_at(block.mosaic, t["ra_deg"], t["dec_deg"])
        if not min(t["flux_per_set_jy"]) >= DETECTABLE_SIGMA * noise:
            continue  # off, or below 10 sigma, in some chunk: not required
        here = SkyCoord(t["ra_deg"], t["dec_deg"], unit="deg")
        near = here.separation(known).arcmin <= SIDELOBE_RADIUS_ARCMIN
        if np.any(near & (block.catalog.flux_jy >= SIDELOBE_RATIO * max(t["flux_per_set_jy"]))):
            vetoed += 1
            continue
        detectable += 1
        hit = _within_beam_fraction(
            new.ra_deg.to_numpy(), new.dec_deg.to_numpy(), t["ra_deg"], t["dec_deg"], beam,
            POSITION_BEAM_FRACTION,
        )  # fmt: skip
        found += int(hit.any())
    print(
        f"transients: {found} of {detectable} found ({vetoed} near bright catalog sources); "
        f"beam {beam[0]:.0f}x{beam[1]:.0f} arcsec"
    )
    assert detectable >= 8
    assert found >= COMPLETENESS * detectable


def test_at_most_one_false_new_source_per_block(block: Block) -> None:
    truth = [*block.truth["sources"], *block.truth["uncatalogued"]]
    every = SkyCoord([s["ra_deg"] for s in truth], [s["dec_deg"] for s in truth], unit="deg")
    new = block.found[block.found["new_source"]]
    if new.empty:
        return
    seen = SkyCoord(new.ra_deg.to_numpy(), new.dec_deg.to_numpy(), unit="deg")
    _, separation, _ = seen.match_to_catalog_sky(every)
    false = int((separation.arcsec > TRUTH_MATCH_BEAMS * _beam(block.mosaic)[0]).sum())
    print(f"new sources: {len(new)}, of nothing true: {false}")
    assert false <= MAX_FALSE_NEW


def _flux_ok(frame: pd.DataFrame, true_flux: pd.Series) -> np.ndarray:
    """Within 10 % or 3 sigma, sigma the mosaic's own noise there (not the fit's error, which
    a poor fit inflates)."""
    diff = (frame.peak_jy - true_flux).abs()
    return np.asarray(
        (diff <= FLUX_REL_TOL * true_flux) | (diff <= FLUX_SIGMA_TOL * frame.local_rms_jy)
    )


def _inside(block: Block, frame: pd.DataFrame, truth: dict[str, dict[str, float]]) -> np.ndarray:
    """Rows whose true source lies away from the mosaic's edge."""
    return np.array(
        [
            math.isfinite(_noise_at(block.mosaic, truth[i]["ra_deg"], truth[i]["dec_deg"]))
            for i in frame.catalog_id
        ],
        dtype=bool,
    )


def test_catalog_fluxes_in_the_mosaic_match_the_truth(block: Block) -> None:
    """Every catalog source away from the edge: the mosaic at its true position, and Aegean's
    fitted peak, within 10 % or 3 sigma of its flux (the done-when criterion)."""
    known = {s["id"]: s for s in block.truth["sources"]}
    true_flux = {k: float(np.mean(v["flux_per_set_jy"])) for k, v in known.items()}
    judged = [
        k
        for k, v in known.items()
        if math.isfinite(_noise_at(block.mosaic, v["ra_deg"], v["dec_deg"]))
    ]
    wcs = wcs_of(block.mosaic.header)
    pixels = []
    for k in judged:
        x, y = wcs.world_to_pixel_values(known[k]["ra_deg"], known[k]["dec_deg"])
        pixels.append((round(float(y)), round(float(x))))
    at = pd.DataFrame(
        {
            "peak_jy": [block.mosaic.image[p] for p in pixels],
            "local_rms_jy": [block.mosaic.noise[p] for p in pixels],
        }
    )
    truth = pd.Series([true_flux[k] for k in judged])
    mosaic_ok = _flux_ok(at, truth)
    print(at.assign(true=truth, ok=mosaic_ok).to_string())
    assert len(judged) >= 5 and mosaic_ok.all()
    matched = block.found[block.found["catalog_id"] != ""]
    matched = matched[_inside(block, matched, known)]
    # The brightest component per catalog source (a faint second one is a sidelobe residual).
    matched = matched.sort_values("peak_jy").groupby("catalog_id").tail(1)
    true = matched.catalog_id.map(true_flux)
    ok = _flux_ok(matched, true)
    print(pd.DataFrame({"peak": matched.peak_jy, "true": true, "ok": ok}).to_string())
    assert len(matched) >= 5 and ok.all()
    # The control: without the primary-beam correction (the old image stage) the mosaic is
    # off by the beam's loss wherever that exceeds the tolerance.
    response = pd.Series([block.mosaic.response[p] for p in pixels])
    lossy = (response < 1 - 2 * FLUX_REL_TOL).to_numpy()
    uncorrected = at.assign(peak_jy=at.peak_jy * response)
    assert not _flux_ok(uncorrected, truth)[lossy].any()


def test_the_extended_emission_raises_no_new_source(block: Block) -> None:
    """The simulator's extended components (in the sky by default with the uncatalogued
    sources): every new source within a component's FWHM of its centre is a true point
    source (within a beam of one), not the component."""
    components = block.truth["diffuse"]
    assert components
    new = block.found[block.found["new_source"]]
    if new.empty:
        return
    points = [*block.truth["sources"], *block.truth["uncatalogued"]]
    every = SkyCoord([s["ra_deg"] for s in points], [s["dec_deg"] for s in points], unit="deg")
    seen = SkyCoord(new.ra_deg.to_numpy(), new.dec_deg.to_numpy(), unit="deg")
    _, to_point, _ = seen.match_to_catalog_sky(every)
    explained = to_point.arcsec <= TRUTH_MATCH_BEAMS * _beam(block.mosaic)[0]
    for c in components:
        centre = SkyCoord(c["ra_deg"], c["dec_deg"], unit="deg")
        on_it = centre.separation(seen).arcmin <= c["fwhm_arcmin"]
        print(f"{c['id']}: {int(on_it.sum())} new sources within its FWHM, all true points")
        assert explained[on_it].all(), c


def test_bright_detections_are_where_the_truth_puts_them(block: Block) -> None:
    beam = _beam(block.mosaic)
    truth = [*block.truth["sources"], *block.truth["uncatalogued"]]
    every = SkyCoord([s["ra_deg"] for s in truth], [s["dec_deg"] for s in truth], unit="deg")
    bright = block.found[block.found.snr >= 2 * DETECTABLE_SIGMA]
    seen = SkyCoord(bright.ra_deg.to_numpy(), bright.dec_deg.to_numpy(), unit="deg")
    index, _, _ = seen.match_to_catalog_sky(every)
    away = [
        math.isfinite(_noise_at(block.mosaic, truth[i]["ra_deg"], truth[i]["dec_deg"]))
        for i in index
    ]
    seen, index = seen[away], index[away]
    inside = [
        bool(_within_beam_fraction(np.array([d.ra.deg]), np.array([d.dec.deg]),
             every[i].ra.deg, every[i].dec.deg, beam, POSITION_BEAM_FRACTION)[0])
        for d, i in zip(seen, index, strict=True)
    ]  # fmt: skip
    assert len(inside) >= 5 and all(inside)


def test_a_field_stating_apparent_coordinates_as_j2000_misplaces_the_sky(
    block: Block, tmp_path: Path
) -> None:
    """The control: relabel one chunk's FIELD with the apparent meridian (LST, pointing dec):
    the same data image ~0.4 deg from the truth."""
    wrong = tmp_path / "wrong.ms"
    shutil.copytree(block.ms[1], wrong)
    with tables.table(str(wrong), ack=False) as main:
        times = np.unique(main.getcol("TIME"))
    mid_jd = 0.5 * (times[0] + times[-1]) / 86400 + 2400000.5
    apparent = np.array([[[float(lst_for(np.array([mid_jd]))[0]), math.radians(DEC_DEG)]]])
    with tables.table(f"{wrong}::FIELD", readonly=False, ack=False) as field:
        for column in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
            field.putcol(column, apparent)
    params = ImagingParams(size_px=int(IMAGE["size_px"]), scale_arcsec=IMAGE["scale_arcsec"])
    right_image = block.chunk_images[1]
    wrong_image = image_chunk(wrong, tmp_path / "wrong", params)
    bright = []
    for path in (right_image, wrong_image.path):
        data, header = read_plane(path)
        iy, ix = np.unravel_index(np.nanargmax(data), data.shape)
        ra, dec = wcs_of(header).celestial.pixel_to_world_values(ix, iy)
        bright.append(SkyCoord(float(ra), float(dec), unit="deg"))
    assert bright[0].separation(bright[1]).deg > WRONG_FIELD_MIN_OFFSET_DEG


def test_the_finder_reports_nothing_on_pure_noise(block: Block, tmp_path: Path) -> None:
    """Aegean on a mosaic of Gaussian noise at the mosaic's own noise map finds <= 1."""
    rng = np.random.default_rng(5)
    noise = block.mosaic.noise
    fake = Mosaic(
        np.where(np.isfinite(noise), rng.standard_normal(noise.shape) * noise, np.nan),
        noise, block.mosaic.response, block.mosaic.header, block.mosaic.chunk_rms,
    )  # fmt: skip
    found = find_sources(fake, tmp_path, FinderParams())
    assert (found.snr >= FinderParams().new_sigma).sum() <= MAX_FALSE_NEW


def test_new_sources_become_candidates_with_their_first_block_and_earlier_limits(
    block: Block, tmp_path: Path
) -> None:
    """The block's new sources, not yet there in an earlier block and seen again in a later
    one: one candidate each, first detected in this block, with the earlier block's 5-sigma
    limit from its noise map, and two detections."""
    rms = tmp_path / "rms.fits"
    write_fits(rms, block.mosaic.noise, block.mosaic.header, "JY/BEAM")
    before = block.found.assign(new_source=False)
    blocks = [
        BlockSources("early", before, rms),
        BlockSources("now", block.found, rms),
        BlockSources("later", block.found, rms),
    ]
    table = candidates(blocks, match_radius_arcsec=_beam(block.mosaic)[1])
    new = block.found[block.found["new_source"]]
    assert len(table) == len(new) >= 5
    assert (table.first_block == "now").all() and (table.detections == 2).all()
    for row in table.itertuples():
        limits: list[dict[str, Any]] = list(row.earlier_upper_limits)  # type: ignore[arg-type]
        (limit,) = limits
        x, y = wcs_of(block.mosaic.header).world_to_pixel_values(row.ra_deg, row.dec_deg)
        expected = UPPER_LIMIT_SIGMA * block.mosaic.noise[round(float(y)), round(float(x))]
        assert limit["block_id"] == "early"
        assert math.isclose(limit["limit_jy"], float(expected), rel_tol=1e-5)
