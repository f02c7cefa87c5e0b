"""Chunk images made once: a chunk imaged again from the same data with the same parameters
is the image already made.

Each chunk is imaged by the fast alerts as soon as it is converted (``science.imaging.fast``),
by its block's ``image`` stage, and again by every re-run of the block (a late chunk, a failed
run retried): at real scale ~500 CPU-s each. :func:`image_chunk_once` keeps each image in a
cache under the published results (``<results_dir>/chunk_images/<ms>.<key>.fits``) with a
JSON sidecar, and images only when no entry matches. The key is a hash of what the image is
made from:

- every imaging parameter (``chunk.ImagingParams``; the fast search's own parameters, a uv cut
  say, make another key: reuse compares, it does not assume), bar the thread count;
- the data column imaged (``CORRECTED_DATA`` once calibrated, else ``DATA``);
- the Measurement Set's identity: its resolved path and the size and modification time of
  each file of its main table (``table.lock`` aside: opening a table rewrites it). Flagging
  or calibration rewrites the columns' files, so an image of the data before them is not
  reused after them.

Entries whose Measurement Set is gone, or that an image of the same MS under another key has
replaced, are removed by :func:`prune` (the stage calls it after imaging).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsa110d.science.atomic import STAGING_DIR, atomic_file
from dsa110d.science.imaging.chunk import (
    ChunkImage,
    ImagingParams,
    chunk_beam,
    data_column,
    image_chunk,
)

log = logging.getLogger(__name__)

CACHE_DIR = "chunk_images"
"""Under the published ``paths.results_dir``."""
KEY_CHARS = 16
"""Hex digits of the SHA-256 key kept in a cache entry's name."""
UNKEYED_PARAMS = ("threads",)
"""Imaging parameters that do not change the image (the thread count)."""
IGNORED_MS_FILES = ("table.lock",)
"""Files of an MS's main table that change without its data changing."""
PRUNE_GRACE_SEC = 3600.0
"""An entry another entry of the same MS replaced is removed only this long after it was last
made or used: a run that took it may still be reading it."""


@dataclass(frozen=True)
class Imaged:
    """A chunk's image and whether it was made now (False: reused from the cache)."""

    chunk: ChunkImage
    made: bool


def cache_dir(results_dir: Path) -> Path:
    """The cache under the published results: a block run's ``results_dir`` is its staging
    directory (``<results>/.staging/<run>``), the published results two levels up."""
    if results_dir.parent.name == STAGING_DIR:
        results_dir = results_dir.parent.parent
    return results_dir / CACHE_DIR


def ms_identity(ms: Path) -> dict[str, Any]:
    """The MS's resolved path and each main-table file's size and mtime (ns)."""
    files = {
        p.name: [p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(ms.iterdir())
        if p.is_file() and p.name not in IGNORED_MS_FILES
    }
    return {"path": str(ms.resolve()), "files": files}


def image_key(ms: Path, params: ImagingParams, column: str) -> tuple[str, dict[str, Any]]:
    """The cache key of ``ms`` imaged with ``params`` from ``column``, and what it hashes."""
    keyed = {k: v for k, v in dataclasses.asdict(params).items() if k not in UNKEYED_PARAMS}
    made_from = {"params": keyed, "column": column, "ms": ms_identity(ms)}
    digest = hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()
    return digest[:KEY_CHARS], made_from


def image_chunk_once(ms: Path, params: ImagingParams, cache: Path, prefix: Path) -> Imaged:
    """The chunk's image from the cache when one was made from the same data with the same
    parameters; else imaged now (``chunk.image_chunk`` under ``prefix``) and cached."""
    column = data_column(ms)
    key, made_from = image_key(ms, params, column)
    cached = cache / f"{ms.name}.{key}.fits"
    sidecar = cached.with_suffix(".json")
    if cached.is_file() and _sidecar(sidecar) == made_from:
        with contextlib.suppress(OSError):  # used now: the newest of its MS for prune()
            os.utime(cached)
        ra, dec, freq = chunk_beam(ms)
        return Imaged(ChunkImage(cached, ra, dec, freq), made=False)
    chunk = image_chunk(ms, prefix, params, column)
    with atomic_file(cached) as temp:
        shutil.copyfile(chunk.path, temp)
    with atomic_file(sidecar) as temp:
        temp.write_text(json.dumps(made_from, sort_keys=True, indent=1))
    if ms_identity(ms) != made_from["ms"]:  # written to while wsclean read it: not reusable
        _remove(sidecar, cached)
    return Imaged(chunk, made=True)


def prune(cache: Path, now: float | None = None) -> list[Path]:
    """Remove the entries no run can reuse: those whose MS is gone, those not made or used
    (an image's mtime: :func:`image_chunk_once` touches what it reuses) for
    ``PRUNE_GRACE_SEC`` while another entry of the same MS was made or used later (the MS
    was written to, or imaged with other parameters), and images that old without a
    sidecar; the images removed."""
    now = time.time() if now is None else now
    by_ms: dict[str, list[tuple[float, Path]]] = {}
    removed = []
    for sidecar in sorted(cache.glob("*.json")) if cache.is_dir() else []:
        image = sidecar.with_suffix(".fits")
        identity = (_sidecar(sidecar) or {}).get("ms")
        ms = str(identity.get("path", "")) if isinstance(identity, dict) else ""
        made = _mtime(image) if ms and Path(ms).is_dir() else None
        if made is None:  # a damaged sidecar, its MS or image gone (another pruner's too)
            removed += _remove(sidecar, image)
            continue
        by_ms.setdefault(ms, []).append((made, sidecar))
    for entries in by_ms.values():
        for made, sidecar in sorted(entries)[:-1]:
            if now - made >= PRUNE_GRACE_SEC:
                removed += _remove(sidecar, sidecar.with_suffix(".fits"))
    for image in sorted(cache.glob("*.fits")) if cache.is_dir() else []:
        # an image without its sidecar: its writer died between the two (or the MS changed
        # under it); the sidecar is written last, so a younger one may still be coming
        orphan = not image.with_suffix(".json").exists()
        made = _mtime(image)
        if orphan and made is not None and now - made >= PRUNE_GRACE_SEC:
            removed += _remove(image.with_suffix(".json"), image)
    return removed


def _sidecar(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _remove(sidecar: Path, image: Path) -> list[Path]:
    sidecar.unlink(missing_ok=True)
    image.unlink(missing_ok=True)
    return [image]
