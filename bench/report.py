"""``python -m bench.report``: render docs/performance.md from ``bench/results/*.json``.

Every benchmark writes its own JSON (``bench.common.report``) with its own figures; the
headline rows below say, per benchmark, which figure is ours, which is the baseline's measured
in the same run, and how they compare (the ratio is computed here when the benchmark did not
store one). Every other scalar figure is listed under the headline table, so nothing measured
is hidden.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


@dataclass(frozen=True)
class Headline:
    """One comparison: our figure against the baseline's, from the same run."""

    what: str
    ours: str
    baseline: str | None
    baseline_name: str
    unit: str
    higher_is_better: bool = False
    goal: str = ""


HEADLINES: dict[str, list[Headline]] = {
    "convert": [
        Headline("one real-scale set (16 x 140 MB) to one MS", "ours_s", "pyuvdata_s",
                 "pyuvdata read + write_ms, single process", "s", goal="<= 20 s, >= 8x"),
        Headline("peak memory of that conversion", "ours_peak_rss_mb", "pyuvdata_peak_rss_mb",
                 "pyuvdata", "MB", goal="<= 1536 MB"),
        Headline("the same set against the disk (durable: fsynced)", "ours_s", "disk_limit_s",
                 "reading and writing the same bytes, fsynced (disk limit)", "s",
                 goal="<= 1.3x the disk limit"),
    ],
    "simulate": [
        Headline("simulate one real-scale set", "ours_seconds", "baseline_seconds",
                 "h5py writing the same bytes from memory (disk floor)", "s", goal="<= 60 s"),
    ],
    "streams": [
        Headline("jobs through the queue", "ours.jobs_per_sec", "arq_tuned.jobs_per_sec",
                 "arq (tuned)", "jobs/s", True, ">= 2x"),
        Headline("p99 latency at 1000 msg/s", "latency_at_1000_per_sec.ours.p99_ms",
                 "latency_at_1000_per_sec.arq_tuned.p99_ms", "arq (tuned)", "ms",
                 goal="<= 5 ms"),
    ],
    "variability": [
        Headline("full recompute, 100k sources x 100 blocks", "ours_full_recompute_sec",
                 "vast_groupby_apply_sec", "VAST-style pandas groupby-apply", "s",
                 goal="<= 3 s, >= 10x"),
        Headline("incremental update by one block (worst)", "ours_incremental_worst_sec", None,
                 "", "s", goal="<= 0.1 s"),
    ],
    "watcher": [
        Headline("set landed -> announced, p99 (bursts of 5 sets/s)", "latency_inotify.p99_ms",
                 "latency_original_60s_polling_expected.p99_ms",
                 "the original 60 s polling (modelled)", "ms", goal="< 500 ms"),
        Headline("set landed -> announced, p50", "latency_inotify.p50_ms",
                 "latency_original_60s_polling_expected.p50_ms",
                 "the original 60 s polling (modelled)", "ms"),
        Headline("10,000 files at start-up -> all announced, cold (first start)",
                 "backlog.ours.cold.seconds", "backlog.baseline_one_process_no_cache.cold.seconds",
                 "previous service: one probe process", "s", goal="< 5 s"),
        Headline("the same on a restart (probe cache)",
                 "backlog.ours.restart.seconds",
                 "backlog.baseline_one_process_no_cache.restart.seconds",
                 "previous service: no cache, every file probed again", "s", goal="< 2 s"),
    ],
    "block": [
        Headline("one 60-min block, strip sky (estimate)", "strip.block_sec_estimate",
                 "strip.goal_sec", "goal", "s", goal="<= 360 s"),
    ],
    "daemon": [
        Headline("start to READY", "start_to_ready_sec", None, "", "s", goal="<= 3 s"),
        Headline("idle CPU", "idle_cpu_percent_of_one_core",
                 "baseline.idle_cpu_percent_of_one_core", "previous commit, same run",
                 "% of a core", goal="< 0.5 %"),
        Headline("idle memory (RSS, shared pages counted per process)", "idle_rss_mb",
                 "baseline.idle_rss_mb", "previous commit, same run", "MB"),
        Headline("idle memory (PSS, shared pages split)", "idle_pss_mb", "baseline.idle_pss_mb",
                 "previous commit, same run", "MB", goal="<= 250 MB"),
        Headline("first job after idle (hinted) vs warm", "first_job.after_idle_with_hint_ms",
                 "first_job.warm_ms", "a warm worker", "ms", goal="within 1 s of warm"),
    ],
    "calibrate": [
        Headline("real-scale chunk: bandpass + gains + apply", "ours.work_s", "casa.total_s",
                 "CASA bandpass + gaincal + applycal, same MS and model", "s", goal=">= 5x"),
        Headline("bandpass solve (ours: with the one read of the data)", "ours.bandpass_s",
                 "casa.bandpass_s", "CASA bandpass", "s"),
        Headline("gain solve (ours: from the same read)", "ours.gains_s", "casa.gains_s",
                 "CASA gaincal", "s"),
        Headline("apply into CORRECTED_DATA", "ours.apply_s", "casa.apply_s", "CASA applycal",
                 "s"),
        Headline("a chunk's calibration (read + gains + apply)", "ours.chunk_gains_apply_s",
                 "goal_chunk_s", "goal", "s", goal="<= 10 s"),
    ],
    "pipeline": [
        Headline("real-scale sets through detection, conversion, photometry",
                 "sets_per_309s", "baseline_sets_per_309s_conversion_only",
                 "real pipeline's converter alone, documented ~120 s/set", "sets per 309 s", True,
                 ">= 5"),
        Headline("one set landed -> photometry (median)", "set_latency_median_s", None, "",
                 "s"),
    ],
    "demo": [
        Headline("dsa110d demo, pipeline part", "pipeline_s", "goal_s", "goal", "s",
                 goal="<= 300 s"),
    ],
    "scaleout": [
        Headline("sets per minute, 1 processor daemon", "daemons.1.sets_per_min", None, "",
                 "sets/min", True),
        Headline("sets per minute, 2 processor daemons", "daemons.2.sets_per_min",
                 "daemons.1.sets_per_min", "1 daemon", "sets/min", True),
        Headline("sets per minute, 3 processor daemons", "daemons.3.sets_per_min",
                 "daemons.1.sets_per_min", "1 daemon", "sets/min", True),
        Headline("coordination overhead per set (3 daemons)", "daemons.3.overhead_ms_per_set",
                 None, "", "ms"),
    ],
}  # fmt: skip


NOTES: dict[str, str] = {
    "watcher": (
        "The state server fsyncs every write (appendfsync always), so a disk stalled by other "
        "work delays every announcement waiting on it: server_fsync_max_ms and the seconds "
        "with fsyncs over 100 ms, recorded during each latency run, say when a p99 was the "
        "disk's. On the shared host the kernel's autogroup scheduling gives the benchmark's "
        "session a fixed share of the CPUs, however many processes it runs, so worker "
        "processes add overhead there rather than speed."
    ),
    "pipeline": (
        "Sets landed together (a backlog), so this is the pipeline's capacity, not its latency "
        "at the telescope's cadence. The 'on idle cores' estimate divides by CPU seconds only "
        "and ignores I/O waits (the converter fsyncs every MS), so it is an upper bound."
    ),
    "scaleout": (
        "All daemons share the same two cores (and the machine is shared with other work), so "
        "more daemons cannot be faster here: the figure shows what coordinating costs. The "
        "overhead per set is the server's CPU time and the commands it processed per set "
        "(leases, heartbeats, set/chunk/block records, streams). Real scale-out needs hosts."
    ),
    "demo": (
        "The default demo: 48 small-scale sets (4 subbands) over 4 sidereal days landing live "
        "at 60x, all three services, to the final analysis run; recovered, judged and "
        "false_positives are its verdict against the simulator's truth."
    ),
}
"""What a reader must know to read a benchmark's figures, rendered under its section."""


def lookup(record: dict[str, Any], dotted: str) -> Any:
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def flatten(record: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every scalar figure as (dotted key, value); lists are summarised."""
    rows: list[tuple[str, Any]] = []
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, f"{name}.")
        elif isinstance(value, list):
            rows.append((name, f"{len(value)} values"))
        else:
            rows.append((name, value))
    return rows


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def headline_row(record: dict[str, Any], h: Headline) -> str:
    ours = lookup(record, h.ours)
    base = lookup(record, h.baseline) if h.baseline else None
    ratio = ""
    if isinstance(ours, int | float) and isinstance(base, int | float) and ours and base:
        value = ours / base if h.higher_is_better else base / ours
        ratio = f"{value:.2f}x"
    baseline = f"{fmt(base)} ({h.baseline_name})" if h.baseline else "-"
    return f"| {h.what} | {fmt(ours)} {h.unit} | {baseline} | {ratio or '-'} | {h.goal or '-'} |"


def _load_averages(node: Any, named: bool = False) -> list[float]:
    """Every 1-minute load average in a record (a number, or the first of a 1/5/15 list)."""
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in _load_averages(v, named or "load_average" in k)]
    if named and isinstance(node, list) and node and isinstance(node[0], int | float):
        return [float(node[0])]
    if named and isinstance(node, int | float) and not isinstance(node, bool):
        return [float(node)]
    return []


def load_sentence(records: list[dict[str, Any]]) -> str:
    """The range of the load averages the benchmarks recorded (on how many cores)."""
    loads = [one_minute for r in records for one_minute in _load_averages(r)]
    if not loads:
        return "The benchmarks recorded no load average."
    return (
        f"The load averages they recorded ranged from {min(loads):.1f} to {max(loads):.1f} "
        f"(on {records[0].get('machine', {}).get('cpus', '?')} cores)."
    )


def render(records: list[dict[str, Any]]) -> str:
    lines = [
        "# Performance",
        "",
        "Rendered by `python -m bench.report` from `bench/results/*.json`; every figure comes",
        "from the benchmark's own JSON, the baseline from the same run as ours. Ratio: how",
        "many times better ours is (baseline time / our time, or our rate / baseline rate).",
        "",
        "Rerun: `make bench` (all benchmarks, then this report) or `python -m bench NAME`",
        "and `python -m bench.report`. The machine is shared: several benchmarks also record",
        "CPU time and the load average, which say how much of a wall-clock figure is waiting.",
        "Each section says when its benchmark ran. " + load_sentence(records),
        "",
    ]
    machines = {json.dumps(r.get("machine", {}), sort_keys=True) for r in records}
    for m in sorted(machines):
        desc = json.loads(m)
        lines.append(
            f"Machine: {desc.get('cpus')} CPUs, {desc.get('processor')}, "
            f"{desc.get('platform')}, Python {desc.get('python')}."
        )
    lines += ["", "## Headlines", "",
              "| benchmark | figure | ours | baseline (same run) | ratio | goal |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for record in records:
        for h in HEADLINES.get(str(record.get("benchmark")), []):
            lines.append(f"| {record['benchmark']} " + headline_row(record, h))
    for record in records:
        name = record.get("benchmark")
        lines += ["", f"## {name}", "", f"Measured {record.get('measured_at')}.", ""]
        if name in NOTES:
            lines += [NOTES[str(name)], ""]
        lines += ["| figure | value |", "| --- | --- |"]
        for key, value in flatten(record):
            if key.startswith(("machine.", "benchmark", "measured_at")):
                continue
            lines.append(f"| {key} | {fmt(value)} |")
    return "\n".join(lines) + "\n"


def load(results: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    order = list(HEADLINES)
    records = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]

    def rank(record: dict[str, Any]) -> int:
        name = record.get("benchmark")
        return order.index(name) if name in order else len(order)

    return sorted(records, key=rank)


def main(argv: list[str] | None = None) -> int:
    out = Path(argv[0]) if argv else DOC
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(load()))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
