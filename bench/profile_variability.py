"""``python -m bench.profile_variability``: where the variability analysis spends its time.

Profiles (cProfile on process CPU time) the full recompute of 10^7 rows (``recompute`` +
``metrics_frame``, the workload of ``bench_variability``) and one incremental block update at
10^5 sources after 10 blocks, and prints each one's wall and CPU time, the load average, and
the functions that hold most of the time (own time and cumulative). The figures quoted in
docs/performance.md come from this script. ``BENCH_VARIABILITY_SOURCES`` (see
``bench_variability``) runs it at a reduced scale.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bench.bench_variability import N_BLOCKS, N_SOURCES, SEED, make_block
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability.state import VariabilityState

TOP = 14
HISTORY = 10


def profiled(label: str, fn: Callable[[], Any]) -> Any:
    profile = cProfile.Profile(time.process_time)  # CPU: the load's waits left out
    wall, cpu = time.perf_counter(), time.process_time()
    profile.enable()
    result = fn()
    profile.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"== {label}: {wall:.3f} s wall, {cpu:.3f} CPU-s, load {os.getloadavg()}")
    stats = pstats.Stats(profile)
    stats.sort_stats("tottime").print_stats(TOP)
    stats.sort_stats("cumulative").print_stats(TOP)
    return result


def main() -> None:
    rng = np.random.default_rng(SEED)
    truth = 10 ** rng.uniform(-2, 0, N_SOURCES)
    blocks = [make_block(rng, b, truth) for b in range(N_BLOCKS)]
    rows = pd.concat(blocks, ignore_index=True)
    rows["block_id"] = rows["block_id"].astype("category")
    var.metrics_frame(var.recompute(rows.head(10_000)))  # warm imports and caches
    metrics = profiled(f"full recompute, {len(rows):,} rows", lambda: var.recompute(rows))
    profiled(f"metrics_frame of {N_SOURCES:,} sources", lambda: var.metrics_frame(metrics))
    state = VariabilityState()
    for block in blocks[:HISTORY]:
        state.apply_block(block)
    profiled(
        f"incremental update of {N_SOURCES:,} sources after {HISTORY} blocks",
        lambda: state.apply_block(blocks[HISTORY]),
    )


if __name__ == "__main__":
    main()
