"""Per-service metrics recorder."""

from __future__ import annotations

import math

import pytest

from dsa110d.metrics import ProcessStats, ServiceMetrics


def test_metrics_count_jobs_and_give_duration_percentiles() -> None:
    metrics = ServiceMetrics()
    for _ in range(3):
        with metrics.job():
            pass
    with pytest.raises(ValueError), metrics.job():
        raise ValueError("bad")
    snap = metrics.snapshot()
    assert (snap["processed"], snap["failed"], snap["error_rate"]) == (3, 1, 0.25)
    assert set(snap["duration_sec"]) == {"p50", "p90", "p99"}


def test_process_stats_survive_a_hidden_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ProcSubset=pid /proc/stat is hidden: the heartbeat must still carry a snapshot."""
    stats = ProcessStats()

    def hidden(*_args: object) -> float:
        raise FileNotFoundError("/proc/stat")

    monkeypatch.setattr(stats._process, "cpu_percent", hidden)
    snap = stats.snapshot()
    assert set(snap) == {"rss_bytes", "cpu_percent", "cpu_seconds"}
    assert math.isnan(snap["cpu_percent"])
