"""``python -m bench.profile_probe``: where a cold start's time goes, a file's probe.

Probes the watcher benchmark's tiny template set (``bench_watcher.Template``) REPEATS times
under cProfile (CPU time) and prints the cost per file (wall and CPU), the load average and the
functions that hold most of it: what 10,000 files cost a cold start (docs/performance.md).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

from bench.bench_watcher import Template
from dsa110d.science.hdf5 import ingest

REPEATS = 50
TOP = 16


def main() -> None:
    template = Template(Path(tempfile.mkdtemp(prefix="profile-probe-")))
    paths = [str(p) for p in template.files]
    root = str(template.files[0].parent)
    ingest.probe_outcomes(paths, root)  # warm imports and the page cache
    profile = cProfile.Profile(time.process_time)  # CPU: the load's waits left out
    wall, cpu = time.perf_counter(), time.process_time()
    profile.enable()
    for _ in range(REPEATS):
        ingest.probe_outcomes(paths, root)
    profile.disable()
    n = REPEATS * len(paths)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"== probe: {n} probes, {1000 * wall / n:.2f} ms wall and {1000 * cpu / n:.2f} ms CPU "
        f"per file (profiled), load {os.getloadavg()}"
    )
    stats = pstats.Stats(profile)
    stats.sort_stats("tottime").print_stats(TOP)


if __name__ == "__main__":
    main()
