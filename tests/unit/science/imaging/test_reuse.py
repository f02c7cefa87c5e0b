"""Chunk images made once (``science.imaging.reuse``), with the real wsclean: a block imaged
again from the same data with the same parameters reuses every chunk image (the cached files
are not rewritten: same inode); other parameters, or a chunk whose MS was written to
since, are imaged again; the cache keeps no entry whose MS is gone, and drops a replaced
entry only when it has not been made or used for an hour."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from casacore import tables

from dsa110d.config import Config
from dsa110d.science.imaging.chunk import wsclean_available
from dsa110d.science.imaging.reuse import CACHE_DIR, PRUNE_GRACE_SEC, prune
from dsa110d.science.pipeline.imaging import image_stage
from tests.helpers.testms import START_MJD_S, SimBlock, job_around
from tests.unit.science.conftest import config_under

pytestmark = [
    pytest.mark.skipif(not wsclean_available(), reason="wsclean is not installed"),
    pytest.mark.timeout(600),
]

IMAGE = {"size_px": 256, "scale_arcsec": 8.0}
CHUNKS = 2


def _config(root: Path, sim: SimBlock, **imaging: Any) -> Config:
    config = config_under(root, catalog=sim.catalog_path)
    return config.model_copy(
        update={"imaging": config.imaging.model_copy(update={**IMAGE, **imaging})}
    )


def _run(config: Config, ms: list[Path], version: int, scratch: Path) -> dict[str, Any]:
    job = job_around(START_MJD_S, version=version)
    scratch.mkdir(parents=True)
    result = image_stage(job, ms, config, scratch)
    assert result.status == "ok"
    return dict(result.summary)


def _cache(config: Config) -> dict[str, int]:
    """Every cached image by name, with its inode (an image written again, always through a
    new file renamed into place, has a new inode)."""
    files = sorted((config.paths.results_dir / CACHE_DIR).glob("*.fits"))
    return {p.name: p.stat().st_ino for p in files}


def test_chunk_images_are_reused_only_for_the_same_data_and_parameters(
    sim_block: SimBlock, tmp_path: Path
) -> None:
    ms = sim_block.ms_paths[:CHUNKS]
    config = _config(tmp_path, sim_block)
    first = _run(config, ms, 1, tmp_path / "s1")
    assert first["chunks_imaged"] == CHUNKS
    cached = _cache(config)
    assert len(cached) == CHUNKS

    again = _run(config, ms, 2, tmp_path / "s2")  # a re-run: nothing changed
    assert again["chunks_imaged"] == 0
    assert _cache(config) == cached  # not rewritten
    assert again["sources"] == first["sources"]

    shallower = _config(tmp_path, sim_block, auto_threshold_sigma=3.0)
    other = _run(shallower, ms, 3, tmp_path / "s3")  # other parameters: imaged again
    assert other["chunks_imaged"] == CHUNKS
    assert len(_cache(config)) == 2 * CHUNKS

    with tables.table(str(ms[0]), readonly=False, ack=False) as main:  # flagging, say
        flags = main.getcol("FLAG")
        flags[:10] = True
        main.putcol("FLAG", flags)
    written = _run(config, ms, 4, tmp_path / "s4")
    assert written["chunks_imaged"] == 1  # only the chunk whose data changed


def test_entries_of_a_removed_ms_and_old_replaced_ones_are_pruned(
    sim_block: SimBlock, tmp_path: Path
) -> None:
    ms = sim_block.ms_paths[:CHUNKS]
    config = _config(tmp_path, sim_block)
    _run(config, ms, 1, tmp_path / "s1")
    _run(_config(tmp_path, sim_block, niter=10), ms, 2, tmp_path / "s2")
    cache = config.paths.results_dir / CACHE_DIR
    assert len(_cache(config)) == 2 * CHUNKS
    assert prune(cache) == []  # the replaced ones are within their grace
    shutil.rmtree(ms[1])
    gone = prune(cache)
    assert len(gone) == 2 and all(p.name.startswith(ms[1].name) for p in gone)
    assert _run(config, ms[:1], 3, tmp_path / "s3")["chunks_imaged"] == 0  # the first reused
    orphan = cache / "crashed.ms.0123456789abcdef.fits"  # its writer died before the sidecar
    orphan.write_bytes(b"")
    assert prune(cache) == []  # young: its sidecar may still be coming
    later = prune(cache, now=_newest(cache) + PRUNE_GRACE_SEC + 1.0)
    assert sorted(p.name.split(".")[0] for p in later) == sorted(["crashed", ms[0].stem])
    assert len(_cache(config)) == 1 and not orphan.exists()
    (kept,) = cache.glob("*.json")
    assert '"niter": 10000' in kept.read_text()  # the one used last stays, niter 10 went


def _newest(cache: Path) -> float:
    return float(np.max([p.stat().st_mtime for p in cache.glob("*.fits")]))


def test_a_damaged_sidecar_is_pruned_and_the_others_are_kept(tmp_path: Path) -> None:
    # one bad cache entry must not fail every block's image stage (prune runs in it)
    cache, ms = tmp_path / CACHE_DIR, tmp_path / "chunk0.ms"
    cache.mkdir()
    ms.mkdir()
    for name, sidecar in [
        ("wrongtype", '{"ms": "not an object"}'),
        ("notjson", "{"),
        ("good", json.dumps({"ms": {"path": str(ms)}})),
    ]:
        (cache / f"{name}.json").write_text(sidecar)
        (cache / f"{name}.fits").write_bytes(b"")
    gone = prune(cache)
    assert sorted(p.name for p in gone) == ["notjson.fits", "wrongtype.fits"]
    assert sorted(p.name for p in cache.iterdir()) == ["good.fits", "good.json"]
