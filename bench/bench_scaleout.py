"""Scale-out: one server, one watcher daemon and 1, 2, 3 processor daemons, each a separate
``dsa110d run`` process with its own worker pool (as separate hosts would run them).

For each count, ``BENCH_SCALEOUT_SETS`` (default 8) small-scale sets (16 subbands) land
together in a fresh directory tree and namespace; the clock runs until every set is
converted and every block's photometry committed. Figures: sets per minute, and the
coordination overhead per set measured at the server (commands processed and server CPU
milliseconds per set, from INFO). On a 2-core machine the daemons share the same two cores,
so the sets-per-minute figure shows the overhead of coordination more than real speed-up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench import pipelinekit as kit
from bench.common import report
from dsa110d.state import embedded

TIMEOUT_S = 1800.0
DAEMON_COUNTS = (1, 2, 3)


def _server_stats(url: str) -> tuple[int, float]:
    client = redis.Redis.from_url(url)
    try:
        info: Any = client.info()
        return int(info["total_commands_processed"]), float(info["used_cpu_sys"]) + float(
            info["used_cpu_user"]
        )
    finally:
        client.close()


def run_with(count: int, sim: Any, catalog: Path, root: Path, n_sets: int) -> dict[str, Any]:
    env = kit.environ(root, catalog, DSA110__SUPERVISOR__WORKERS="1",
                      DSA110__REDIS__NAMESPACE=f"scale{count}")  # fmt: skip
    config = kit.config_of(env)
    log = root / "daemons.log"
    procs = [kit.start_daemon(env, "watcher", log)]
    try:
        kit.wait_ready(log, 1)
        procs += [kit.start_daemon(env, "processor", log) for _ in range(count)]
        kit.wait_ready(log, 1 + count)
        server = embedded.running_server(config.paths.state_dir)
        assert server is not None
        commands0, cpu0 = _server_stats(server.url)
        t0 = time.time()
        for index in range(n_sets):
            kit.land_set(kit.set_files(sim, index), config.paths.incoming_dir)
        finished = kit.wait_until(
            lambda: kit.progress(config)[0] == n_sets and kit.progress(config)[1] >= n_sets,
            TIMEOUT_S,
            0.5,
        )
        elapsed = time.time() - t0
        commands1, cpu1 = _server_stats(server.url)
        cpu_s = kit.tree_cpu_seconds(procs)
    finally:
        kit.stop(procs, config.paths.state_dir)
    return {
        "finished": finished,
        "elapsed_s": round(elapsed, 1),
        "sets_per_min": round(n_sets * 60.0 / elapsed, 2),
        "daemons_cpu_s": round(cpu_s, 1),
        "server_commands_per_set": round((commands1 - commands0) / n_sets, 1),
        "overhead_ms_per_set": round((cpu1 - cpu0) * 1000.0 / n_sets, 2),
    }


def main() -> None:
    n_sets = int(os.environ.get("BENCH_SCALEOUT_SETS", "8"))
    scratch = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    try:
        sim, catalog = kit.simulate_sets(scratch / "sky", n_sets, "small")
        before = kit.load_average()
        results = {
            str(count): run_with(count, sim, catalog, scratch / f"run{count}", n_sets)
            for count in DAEMON_COUNTS
        }
        report(
            "scaleout",
            {
                "what": f"{n_sets} small-scale sets (16 subbands), 1 watcher + N processor "
                "daemons (1 worker each) on one embedded server",
                "sets": n_sets,
                "daemons": results,
                "overhead_note": "server CPU per set (INFO used_cpu_*) while the sets flowed",
                "speedup_2_over_1": round(
                    results["2"]["sets_per_min"] / results["1"]["sets_per_min"], 2
                ),
                "speedup_3_over_1": round(
                    results["3"]["sets_per_min"] / results["1"]["sets_per_min"], 2
                ),
                "cores": os.cpu_count(),
                "load_average_before": before,
                "load_average_after": kit.load_average(),
            },
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
