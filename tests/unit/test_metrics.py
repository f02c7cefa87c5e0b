"""Per-service metrics recorder."""

from __future__ import annotations

import math
from typing import Any

import pytest

from dsa110d.metrics import ProcessStats, PrometheusCollector, ServiceMetrics
from dsa110d.resilience import BreakerSnapshot, BreakerState


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


def test_the_collector_shows_each_breaker_state_and_failures() -> None:
    snapshots = [
        BreakerSnapshot("webhook", BreakerState.OPEN, 5, 1.0, "SinkError: HTTP 500"),
        BreakerSnapshot("wsclean", BreakerState.CLOSED, 0, 0.0, None),
    ]
    collector = PrometheusCollector(
        dict, lambda: {"rss_bytes": 1.0, "cpu_seconds": 1.0}, lambda: snapshots
    )
    samples = {
        (s.name, s.labels.get("breaker")): s.value
        for family in collector.collect()
        for s in family.samples
        if s.name.startswith("dsa110_circuit_breaker")
    }
    assert samples == {
        ("dsa110_circuit_breaker_state", "webhook"): 2.0,
        ("dsa110_circuit_breaker_state", "wsclean"): 0.0,
        ("dsa110_circuit_breaker_failures", "webhook"): 5.0,
        ("dsa110_circuit_breaker_failures", "wsclean"): 0.0,
    }


def _calibration_samples(metrics: ServiceMetrics) -> dict[tuple[str, ...], float]:
    snapshot: dict[str, dict[str, Any]] = {
        "processor": {"metrics": metrics.snapshot()},
        "watcher": {"metrics": {}},
    }
    collector = PrometheusCollector(
        lambda: snapshot, lambda: {"rss_bytes": 1.0, "cpu_seconds": 1.0}
    )
    return {
        (s.name, *s.labels.values()): s.value
        for family in collector.collect()
        for s in family.samples
        if s.name.startswith("dsa110_calibration")
    }


def test_the_collector_shows_the_calibration_registry_of_the_processor() -> None:
    metrics = ServiceMetrics()
    assert _calibration_samples(metrics) == {}  # no calibrate stage has run: no samples
    metrics.calibration = {
        "solutions": {"bandpass": {"ok": 2, "poor": 1, "superseded": 0}},
        "bandpass_age_sec": 7200.0, "bandpass_valid": True,
        "gains_amp_scatter": 0.3, "gains_phase_scatter_deg": 4.0, "gains_qa_ok": False,
    }  # fmt: skip
    assert _calibration_samples(metrics) == {
        ("dsa110_calibration_solutions", "processor", "bandpass", "ok"): 2.0,
        ("dsa110_calibration_solutions", "processor", "bandpass", "poor"): 1.0,
        ("dsa110_calibration_solutions", "processor", "bandpass", "superseded"): 0.0,
        ("dsa110_calibration_bandpass_age_seconds", "processor"): 7200.0,
        ("dsa110_calibration_bandpass_valid", "processor"): 1.0,
        ("dsa110_calibration_gain_amp_scatter", "processor"): 0.3,
        ("dsa110_calibration_gain_phase_scatter_degrees", "processor"): 4.0,
        ("dsa110_calibration_gain_qa_ok", "processor"): 0.0,
    }
