"""Photometry files as the processor writes them (its schema and dtypes), for analyzer tests.

Sources ``S000``..: steady ones, a few strong variables (50% modulation at SNR ~ 100) and one
new source (zero in the first blocks, then bright). One Parquet file per block under
``<results_dir>/photometry``, published atomically like the processor does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dsa110d.science.atomic import atomic_file

N_STEADY = 40
VARIABLES = ("V000", "V001", "V002")
TRANSIENT = "T000"
MJD0 = 61000.0
BLOCK_DAYS = 1.0 / 24.0


def block_id(b: int) -> str:
    return f"2026-01-01T{b:02d}:00:00"


PARTIAL = ("S005", 1)
"""(source, block) of the one row flagged partial_transit (unusable); block 6 lacked a chunk,
so all its rows carry missing_chunks (informational: kept)."""


def flags_of(b: int, ids: list[str]) -> list[str]:
    flags = ["missing_chunks" if b == 6 else ""] * len(ids)
    if b == PARTIAL[1]:
        flags[ids.index(PARTIAL[0])] = "partial_transit"
    return flags


def block_rows(b: int, version: int = 1, seed: int = 0, scale: float = 1.0) -> pd.DataFrame:
    """One block's photometry (deterministic in b, version and seed)."""
    rng = np.random.default_rng([seed, b, version])
    ids = [f"S{i:03d}" for i in range(N_STEADY)] + list(VARIABLES) + [TRANSIENT]
    n = len(ids)
    level = np.concatenate(
        [
            np.linspace(0.05, 1.0, N_STEADY),
            1.0 + 0.5 * np.sin(np.array([0.0, 1.0, 2.0]) + 1.7 * b),
            [0.0 if b < 4 else 0.5],
        ]
    )
    err = np.full(n, 0.005)
    flux = scale * level + rng.normal(0.0, 1.0, n) * err
    frame = pd.DataFrame(
        {
            "source_id": ids,
            "ra_deg": np.linspace(10.0, 20.0, n),
            "dec_deg": np.full(n, 33.0),
            "block_id": block_id(b),
            "mjd": MJD0 + b * BLOCK_DAYS + rng.uniform(0.0, 1e-3, n),
            "transit_mjd": MJD0 + b * BLOCK_DAYS + rng.uniform(0.0, 1e-3, n),
            "flux_jy": flux,
            "flux_err_jy": err,
            "n_vis": np.full(n, 4000),
            "beam_gain": np.full(n, 0.8),
            "pointing_dec_deg": np.full(n, 33.0),
            "beam_offset_deg": np.full(n, 0.5),
            "beam_model": "tapered",
            "position_offset_arcsec": np.zeros(n),
            "flags": flags_of(b, ids),
            "version": version,
        }
    )
    return frame.astype(
        {"source_id": "string", "block_id": "string", "flags": "string", "beam_model": "string",
         "n_vis": "int64", "version": "int64"}
    )  # fmt: skip


def photometry_path(results_dir: Path, b: int) -> Path:
    return results_dir / "photometry" / f"{block_id(b)}.parquet"


def write_block(results_dir: Path, b: int, version: int = 1, **kw: float) -> pd.DataFrame:
    frame = block_rows(b, version, **kw)  # type: ignore[arg-type]
    with atomic_file(photometry_path(results_dir, b)) as tmp:
        frame.to_parquet(tmp, index=False)
    return frame


def seed_blocks(results_dir: Path, blocks: range) -> list[pd.DataFrame]:
    return [write_block(results_dir, b) for b in blocks]
