"""The whole pipeline's real-time factor: real-scale sets through detection, conversion and
photometry, as ``dsa110d run --services watcher,processor`` on the embedded server.

``BENCH_PIPELINE_SETS`` (default 3) real-scale sets (16 x ~140 MB) are simulated first (not
timed), then landed together (hard links renamed into place, as the correlator's rename); the
clock runs from landing to the last set's block photometry committed in Redis (one chunk per
block, so every set is photometered). Figure: sets per 309 s (the cadence at which the
telescope writes them; goal >= 5). Baseline: the real pipeline's documented converter, ~2 min
per set with 4 processes (DESIGN section 2), i.e. ~2.6 sets per 309 s for conversion alone.
The machine is shared: the daemon tree's CPU seconds give the figure on two idle cores.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from bench import pipelinekit as kit
from bench.common import report

SET_CADENCE_S = 309.0
"""Seconds between two sets from the telescope (24 x 12.884902 s)."""
GOAL_SETS_PER_CADENCE = 5.0
BASELINE_CONVERT_S = 120.0
"""The real pipeline's converter per set with 4 processes (DESIGN section 2)."""
TIMEOUT_S = 3600.0


def main() -> None:
    n_sets = int(os.environ.get("BENCH_PIPELINE_SETS", "3"))
    root = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        began = time.perf_counter()
        sim, catalog = kit.simulate_sets(root / "sky", n_sets, "real")
        simulate_s = time.perf_counter() - began
        env = kit.environ(root / "run", catalog)
        config = kit.config_of(env)
        log = root / "daemon.log"
        before = kit.load_average()
        daemon = kit.start_daemon(env, "watcher,processor", log)
        try:
            kit.wait_ready(log)
            t0 = time.time()
            for index in range(n_sets):
                kit.land_set(kit.set_files(sim, index), config.paths.incoming_dir)
            finished = kit.wait_until(
                lambda: kit.progress(config)[:2] == (n_sets, n_sets), TIMEOUT_S, 1.0
            )
            elapsed = time.time() - t0
            cpu_s = kit.tree_cpu_seconds([daemon])
            _, _, done_at = kit.progress(config)
        finally:
            kit.stop([daemon], config.paths.state_dir)
        cores = os.cpu_count() or 1
        report(
            "pipeline",
            {
                "what": f"{n_sets} real-scale sets landed together -> MS -> block photometry",
                "sets": n_sets,
                "finished": finished,
                "simulate_s": round(simulate_s, 1),
                "elapsed_s": round(elapsed, 1),
                "per_set_s": round(elapsed / n_sets, 1),
                "sets_per_309s": round(n_sets * SET_CADENCE_S / elapsed, 2),
                "goal_sets_per_309s": GOAL_SETS_PER_CADENCE,
                "daemon_tree_cpu_s": round(cpu_s, 1),
                "sets_per_309s_on_idle_cores_estimate": round(
                    n_sets * SET_CADENCE_S / max(cpu_s / cores, 1e-9), 2
                ),
                "set_latency_median_s": round(sorted(t - t0 for t in done_at)[len(done_at) // 2], 1)
                if done_at
                else None,
                "baseline": "real pipeline's converter, ~120 s per set with 4 processes",
                "baseline_sets_per_309s_conversion_only": round(
                    SET_CADENCE_S / BASELINE_CONVERT_S, 2
                ),
                "load_average_before": before,
                "load_average_after": kit.load_average(),
                "meets_goal": n_sets * SET_CADENCE_S / elapsed >= GOAL_SETS_PER_CADENCE,
            },
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
