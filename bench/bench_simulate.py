"""Wall time to simulate one real-scale set (16 subbands, ~2.3 GB) and its write rate.

Baseline, measured in the same run: writing the same bytes (same files, datasets and shapes,
data already in memory) with h5py, i.e. the disk's floor for this layout. The ratio says how
close the simulator comes to just writing the files. Goal (issue #5): well under a minute.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from bench.common import report
from dsa110d.science import constants as k
from dsa110d.science.simulation.simulate import SimulationSpec, simulate

GOAL_SECONDS = 60.0
"""Issue #5: a real-scale set in well under a minute."""


def _simulate_one_set(out: Path) -> tuple[float, int]:
    began = time.perf_counter()
    result = simulate(
        SimulationSpec(
            out=out, start=datetime(2026, 3, 20, 6, tzinfo=UTC), sets=1, scale="real", seed=1
        )
    )
    return time.perf_counter() - began, result.bytes_written


def _write_floor(out: Path) -> float:
    """Write 16 files of the real layout's Data/* from arrays already in memory."""
    n_blts = k.N_BASELINES_DATA * k.INTEGRATIONS_PER_FILE
    shape = (n_blts, 1, k.CHANNELS_PER_SUBBAND, 2)
    vis = np.ones(shape, dtype=np.complex64)
    flags = np.zeros(shape, dtype=np.bool_)
    nsamples = np.ones(shape, dtype=np.float32)
    began = time.perf_counter()
    for sb in range(k.N_SUBBANDS):
        with h5py.File(out / f"floor_sb{sb:02d}.hdf5", "w") as f:
            f.create_dataset("Data/visdata", data=vis)
            f.create_dataset("Data/flags", data=flags)
            f.create_dataset("Data/nsamples", data=nsamples)
    return time.perf_counter() - began


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-simulate-"))
    try:
        (root / "sim").mkdir()
        (root / "floor").mkdir()
        sim_s, nbytes = _simulate_one_set(root / "sim")
        shutil.rmtree(root / "sim")
        floor_s = _write_floor(root / "floor")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    megabytes = nbytes / 1e6
    report(
        "simulate",
        {
            "what": "one real-scale set: 16 subbands x 96 antennas x 48 channels x 24 integrations",
            "set_bytes": nbytes,
            "ours_seconds": round(sim_s, 2),
            "ours_mb_per_s": round(megabytes / sim_s, 1),
            "baseline": "h5py writing the same Data/* bytes from memory (disk floor)",
            "baseline_seconds": round(floor_s, 2),
            "baseline_mb_per_s": round(megabytes / floor_s, 1),
            "ratio_ours_over_baseline_time": round(sim_s / floor_s, 2),
            "goal_seconds": GOAL_SECONDS,
            "meets_goal": sim_s < GOAL_SECONDS,
        },
    )


if __name__ == "__main__":
    main()
