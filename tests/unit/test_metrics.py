"""Per-service metrics recorder."""

from __future__ import annotations

import pytest

from dsa110d.metrics import ServiceMetrics


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
