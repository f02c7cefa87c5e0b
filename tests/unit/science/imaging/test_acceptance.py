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

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from casacore import tables

from dsa110d.science.imaging.candidates import UPPER_LIMIT_SIGMA, BlockSources, candidates
from dsa110d.science.imaging.chunk import ImagingParams, image_chunk, read_plane, wcs_of
from dsa110d.science.imaging.finder import FinderParams, find_sources
from dsa110d.science.imaging.mosaic import Mosaic, write_fits
from dsa110d.science.simulation.visibilities import lst_for
from tests.helpers.imaging_kit import (
    DEC_DEG,
    DETECTABLE_SIGMA,
    FLUX_REL_TOL,
    FLUX_SIGMA_TOL,
    IMAGE,
    POSITION_BEAM_FRACTION,
    TRUTH_MATCH_BEAMS,
    Block,
    beam,
    completeness,
    false_new,
    make_block,
    noise_at,
    within_beam_fraction,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
"""The shared block takes ~1.5 min on a quiet machine (simulate, convert, 3 wsclean runs of
768 x 768, mosaic, Aegean): ~5 min at load 15."""

SEED = 11
COMPLETENESS = 0.9
MAX_FALSE_NEW = 1
FAINT_SNR_RANGE = (5.0, 20.0)
FAINT_MIN_SOURCES = 8
FAINT_BIAS_MAX_SIGMA = 1.0
FAINT_RATIO_TOL = 0.08
"""Faint steady sources (FAINT_SNR_RANGE x the mosaic's noise) read low in the mosaic by
-0.74 +- 0.15 sigma on average over seeds 11-16 (median ratio 0.95), -0.65 sigma and 0.948
in this block: CLEAN's bias (absent from the dirty image, ~-0.4 chunk sigma at every clean
depth tried, doubled by a mask grown from 3 sigma). These bounds hold today's bias and fail
that deeper clean (-1.24 sigma, 0.888)."""
WRONG_FIELD_MIN_OFFSET_DEG = 0.2


@pytest.fixture(scope="module")
def block(tmp_path_factory: pytest.TempPathFactory) -> Block:
    return make_block(tmp_path_factory.mktemp("acceptance"), SEED)


def test_transients_at_10_sigma_are_found_as_new_sources_within_a_fifth_of_the_beam(
    block: Block,
) -> None:
    """Transients in a catalog source's sidelobe veto zone (finder.SIDELOBE_*) are not
    required: the finder declines them by design (counted and printed)."""
    judged = completeness(block)
    shape = beam(block.mosaic)
    print(
        f"transients: {judged.found} of {judged.detectable} found ({judged.vetoed} near bright "
        f"catalog sources), missed {judged.missed}; beam {shape[0]:.0f}x{shape[1]:.0f} arcsec"
    )
    assert judged.detectable >= 8
    assert judged.found >= COMPLETENESS * judged.detectable


def test_at_most_one_false_new_source_per_block(block: Block) -> None:
    false = false_new(block)
    print(f"new sources: {int(block.found['new_source'].sum())}, of nothing true: {false}")
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
            math.isfinite(noise_at(block.mosaic, truth[i]["ra_deg"], truth[i]["dec_deg"]))
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
        if math.isfinite(noise_at(block.mosaic, v["ra_deg"], v["dec_deg"]))
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


def test_faint_sources_are_not_biased_low_in_the_mosaic(block: Block) -> None:
    """Every steady point source the truth lists (catalog and uncatalogued, the same flux in
    each set) between FAINT_SNR_RANGE times the mosaic's noise, away from the edge: the mosaic
    at its true position reads on average no more than FAINT_BIAS_MAX_SIGMA noise below the
    truth, and its median ratio to the truth is within FAINT_RATIO_TOL of 1. A clean that
    puts components on noise (auto-mask 3 sigma, threshold 0.5) fails it: -1.2 sigma, 0.89
    (docs/processor.md, "Faint-source fluxes in the mosaic")."""
    steady = [
        s
        for s in [*block.truth["sources"], *block.truth["uncatalogued"]]
        if min(s["flux_per_set_jy"]) > 0 and len(set(s["flux_per_set_jy"])) == 1
    ]
    wcs = wcs_of(block.mosaic.header)
    true, seen, noise = [], [], []
    for s in steady:
        sigma = noise_at(block.mosaic, s["ra_deg"], s["dec_deg"])
        flux = float(s["flux_per_set_jy"][0])
        if not FAINT_SNR_RANGE[0] <= flux / sigma < FAINT_SNR_RANGE[1]:
            continue  # NaN (edge) compares false too
        x, y = wcs.world_to_pixel_values(s["ra_deg"], s["dec_deg"])
        true.append(flux)
        seen.append(float(block.mosaic.image[round(float(y)), round(float(x))]))
        noise.append(sigma)
    t, m, n = np.array(true), np.array(seen), np.array(noise)
    bias, ratio = float(np.mean((m - t) / n)), float(np.median(m / t))
    print(f"{len(t)} steady sources at 5-20 sigma: mean bias {bias:+.2f} sigma, median {ratio:.3f}")
    assert len(t) >= FAINT_MIN_SOURCES
    assert bias >= -FAINT_BIAS_MAX_SIGMA
    assert abs(ratio - 1) <= FAINT_RATIO_TOL


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
    explained = to_point.arcsec <= TRUTH_MATCH_BEAMS * beam(block.mosaic)[0]
    for c in components:
        centre = SkyCoord(c["ra_deg"], c["dec_deg"], unit="deg")
        on_it = centre.separation(seen).arcmin <= c["fwhm_arcmin"]
        print(f"{c['id']}: {int(on_it.sum())} new sources within its FWHM, all true points")
        assert explained[on_it].all(), c


def test_bright_detections_are_where_the_truth_puts_them(block: Block) -> None:
    shape = beam(block.mosaic)
    truth = [*block.truth["sources"], *block.truth["uncatalogued"]]
    every = SkyCoord([s["ra_deg"] for s in truth], [s["dec_deg"] for s in truth], unit="deg")
    bright = block.found[block.found.snr >= 2 * DETECTABLE_SIGMA]
    seen = SkyCoord(bright.ra_deg.to_numpy(), bright.dec_deg.to_numpy(), unit="deg")
    index, _, _ = seen.match_to_catalog_sky(every)
    away = [
        math.isfinite(noise_at(block.mosaic, truth[i]["ra_deg"], truth[i]["dec_deg"]))
        for i in index
    ]
    seen, index = seen[away], index[away]
    inside = [
        bool(within_beam_fraction(np.array([d.ra.deg]), np.array([d.dec.deg]),
             every[i].ra.deg, every[i].dec.deg, shape, POSITION_BEAM_FRACTION)[0])
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
    table = candidates(blocks, match_radius_arcsec=beam(block.mosaic)[1])
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
