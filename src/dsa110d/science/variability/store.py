"""The variability state on disk: a directory of Parquet files and one JSON manifest (no pickle).

``save_state(state, directory)`` writes the block chunks not yet saved, then the sources (sums,
best pairs, new-source facts) and the staircases, then the manifest, which names every block
file: a crash part-way leaves the previous state readable. ``load_state(directory)`` reads it
back (an absent directory is an empty state).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from dsa110d.errors import VariabilityInputError
from dsa110d.science.atomic import atomic_file
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability import pairs
from dsa110d.science.variability.metrics import FloatArray
from dsa110d.science.variability.staircase import Staircase
from dsa110d.science.variability.state import BlockChunk, VariabilityState

STATE_FORMAT = 1
MANIFEST = "manifest.json"
SOURCES_FILE = "sources.parquet"
FRONTS_FILE = "fronts.parquet"
BLOCKS_DIR = "blocks"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

_SUM_COLS = ("n", "mean", "m2", "w", "wmean", "wm2")
_PAIR_COLS = ("pair_vs", "pair_m", "pair_mjd_a", "pair_mjd_b")
_TRANSIENT_COLS = ("first_det_mjd", "first_det_snr", "n_prior", "prior_max_abs_snr", "last_mjd")


def save_state(state: VariabilityState, directory: Path) -> None:
    """Write the state: new block chunks, then sources and staircases, then the manifest.

    The manifest is written last and names every block file, so a crash part-way leaves
    the previous state readable. Unchanged block chunks are not rewritten; the files of block
    versions superseded since the last save are removed after the manifest no longer names
    them.
    """
    blocks_dir = directory / BLOCKS_DIR
    blocks_dir.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(state.ids)
    for block_id, chunk in state.blocks.items():
        if chunk.saved:
            continue
        frame = pd.DataFrame(
            {
                "source_id": ids[chunk.codes],
                "flux_jy": chunk.flux,
                "flux_err_jy": chunk.err,
                "mjd": chunk.mjd,
            }
        )
        with atomic_file(blocks_dir / _block_file(block_id, chunk.version)) as tmp:
            frame.to_parquet(tmp, index=False)
        chunk.saved = True
    sources = pd.DataFrame({"source_id": ids, "ra_deg": state.ra_deg, "dec_deg": state.dec_deg})
    for name, arr in zip(_SUM_COLS, state.sums.arrays(), strict=True):
        sources[name] = arr
    for name, arr in zip(_PAIR_COLS, state.pair.arrays(), strict=True):
        sources[name] = arr
    for name, arr in zip(_TRANSIENT_COLS, state.transient.arrays(), strict=True):
        sources[name] = arr
    with atomic_file(directory / SOURCES_FILE) as tmp:
        sources.to_parquet(tmp, index=False)
    with atomic_file(directory / FRONTS_FILE) as tmp:
        _fronts_frame(state.upper, state.lower).to_parquet(tmp, index=False)
    manifest = {
        "format": STATE_FORMAT,
        "vs_threshold": state.vs_threshold,
        "blocks": {
            b: {"version": c.version, "file": _block_file(b, c.version)}
            for b, c in state.blocks.items()
        },
    }
    with atomic_file(directory / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    for block_id, version in state.superseded:
        (blocks_dir / _block_file(block_id, version)).unlink(missing_ok=True)
    state.superseded.clear()


def load_state(directory: Path) -> VariabilityState:
    """Read a saved state; an absent directory is an empty state."""
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        return VariabilityState()
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != STATE_FORMAT:
            found = manifest.get("format")
            raise VariabilityInputError(
                f"{manifest_path}: state format {found!r}, expected {STATE_FORMAT}"
            )
        sources = pd.read_parquet(directory / SOURCES_FILE)

        def col(frame: pd.DataFrame, name: str) -> FloatArray:
            return np.array(frame[name], dtype=np.float64)  # a writable copy

        ids = pd.Index(sources["source_id"])
        upper, lower = _fronts_from_frame(pd.read_parquet(directory / FRONTS_FILE), len(ids))
        state = VariabilityState(
            ids=ids,
            ra_deg=col(sources, "ra_deg"),
            dec_deg=col(sources, "dec_deg"),
            sums=var.SourceSums(*(col(sources, c) for c in _SUM_COLS)),
            pair=var.PairState(*(col(sources, c) for c in _PAIR_COLS)),
            transient=var.TransientState(*(col(sources, c) for c in _TRANSIENT_COLS)),
            upper=upper,
            lower=lower,
            vs_threshold=float(manifest.get("vs_threshold", pairs.VS_THRESHOLD)),
        )
        for block_id, entry in manifest["blocks"].items():
            frame = pd.read_parquet(directory / BLOCKS_DIR / entry["file"])
            state.blocks[block_id] = BlockChunk(
                int(entry["version"]),
                state.ids.get_indexer(pd.Index(frame["source_id"])).astype(np.int64),
                col(frame, "flux_jy"),
                col(frame, "flux_err_jy"),
                col(frame, "mjd"),
                saved=True,
            )
    except (OSError, KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, VariabilityInputError):
            raise
        raise VariabilityInputError(f"{directory}: unreadable variability state: {exc}") from exc
    return state


def _block_file(block_id: str, version: int) -> str:
    return f"{_UNSAFE.sub('_', block_id)}.v{version}.parquet"


def _fronts_frame(upper: Staircase, lower: Staircase) -> pd.DataFrame:
    parts = []
    for role, stair in (("upper", upper), ("lower", lower)):
        rows, cols = np.nonzero(np.isfinite(stair.flux))
        parts.append(
            pd.DataFrame(
                {
                    "source_index": rows.astype(np.int64),
                    "role": role,
                    "flux_jy": stair.flux[rows, cols],
                    "flux_err_jy": stair.err[rows, cols],
                    "mjd": stair.mjd[rows, cols],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _fronts_from_frame(frame: pd.DataFrame, size: int) -> tuple[Staircase, Staircase]:
    out = []
    for role in ("upper", "lower"):
        part = frame[frame["role"] == role]
        codes = part["source_index"].to_numpy(np.int64)
        cols = var.dense(
            codes,
            size,
            part["flux_jy"].to_numpy(np.float64),
            part["flux_err_jy"].to_numpy(np.float64),
            part["mjd"].to_numpy(np.float64),
        )
        out.append(Staircase.of(np.stack(cols, axis=-1)))
    return out[0], out[1]
