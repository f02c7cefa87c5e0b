"""Per-service metrics: counts, error rate, queue lag, job durations, process RSS and CPU.

A :class:`ServiceMetrics` recorder lives in each service's context; the manager snapshots it
into the registry entry (for ``dsa110ctl``) and, when ``metrics.port`` is set, serves every
snapshot on a loopback Prometheus endpoint (names ``dsa110_*``, base units, ``_total`` counters).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dsa110d.resilience import BREAKER_GAUGE, BreakerSnapshot

DURATION_SAMPLES = 1000  # recent job durations kept for percentiles
QUANTILES = (0.5, 0.9, 0.99)
RESULT_KINDS = (
    "sets", "chunks", "blocks", "runs", "runs_failed", "runs_skipped",
    "fast_alerts", "fast_alerts_confirmed", "fast_alerts_retracted",
)  # fmt: skip
"""Domain counters that only grow, exported as ``dsa110_results_total{kind}`` (the others, like
the processor's ``pending_blocks``, are levels shown in STATUS only)."""


class ServiceMetrics:
    """Counters and gauges one service updates; cheap, synchronous, event-loop only."""

    def __init__(self) -> None:
        self.processed = 0
        self.failed = 0
        self.queue_lag_sec = 0.0
        self.backlog = 0
        self.counters: dict[str, int] = {}
        self.dead_letters = 0
        """Dead letters waiting in the streams this service consumes (a level)."""
        self.flag_fraction: float | None = None
        """Fraction of the last processed block's samples that are flagged (None before one)."""
        self.calibration: dict[str, Any] | None = None
        """The calibration registry at a glance (``CalibrationSummary.to_metrics`` plus
        ``gains_qa_ok``), refreshed by the processor; None where no calibrate stage has run."""
        self.bad_antennas: int | None = None
        """Antennas the last processed block's flag stage found bad (None before one)."""
        self._durations: deque[float] = deque(maxlen=DURATION_SAMPLES)
        self._stages: dict[str, deque[float]] = {}

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        """Time one job: success counts as processed, an exception as failed (and re-raises).

        A cancelled job (shutdown, restart) is neither: it was abandoned, not done.
        """
        start = time.monotonic()
        try:
            yield
        except Exception:
            self.failed += 1
            self._durations.append(time.monotonic() - start)
            raise
        self.processed += 1
        self._durations.append(time.monotonic() - start)

    def add(self, name: str, count: int = 1) -> None:
        """A domain counter (``sets``, ``blocks``...) shown in STATUS and the registry."""
        self.counters[name] = self.counters.get(name, 0) + count

    def observe(self, stage: str, seconds: float) -> None:
        """The duration of one step of a job (``conversion``, ``block``), for its quantiles."""
        self._stages.setdefault(stage, deque(maxlen=DURATION_SAMPLES)).append(seconds)

    def error_rate(self) -> float:
        total = self.processed + self.failed
        return self.failed / total if total else 0.0

    def percentiles(self) -> dict[str, float]:
        """Job duration quantiles over the recent jobs, seconds (empty when no job ran)."""
        return _quantiles(self._durations)

    def stage_percentiles(self) -> dict[str, dict[str, float]]:
        """Per observed stage, its duration quantiles, seconds."""
        return {stage: _quantiles(samples) for stage, samples in self._stages.items()}

    def snapshot(self) -> dict[str, Any]:
        return {
            "processed": self.processed,
            "failed": self.failed,
            "error_rate": round(self.error_rate(), 4),
            "queue_lag_sec": self.queue_lag_sec,
            "backlog": self.backlog,
            "duration_sec": self.percentiles(),
            "counters": dict(self.counters),
            "dead_letters": self.dead_letters,
            "stage_sec": self.stage_percentiles(),
            "flag_fraction": self.flag_fraction,
            "calibration": self.calibration,
            "bad_antennas": self.bad_antennas,
        }


def _quantiles(samples: deque[float]) -> dict[str, float]:
    if not samples:
        return {}
    ordered = sorted(samples)
    last = len(ordered) - 1
    return {f"p{round(q * 100)}": ordered[round(q * last)] for q in QUANTILES}


class ProcessStats:
    """RSS and CPU of this process and its children (the worker pool)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        with contextlib.suppress(psutil.Error, OSError):
            self._process.cpu_percent(None)  # prime: the first reading is always 0

    def snapshot(self) -> dict[str, float]:
        """The figures, or NaN where the system hides them (e.g. ProcSubset=pid hides /proc/stat):
        a missing figure must never stop the heartbeat that carries it."""
        try:
            return self._measure()
        except (psutil.Error, OSError):
            nan = float("nan")
            return {"rss_bytes": nan, "cpu_percent": nan, "cpu_seconds": nan}

    def _measure(self) -> dict[str, float]:
        rss = self._process.memory_info().rss
        cpu_times = self._process.cpu_times()
        cpu_sec = cpu_times.user + cpu_times.system
        for child in self._children():
            with contextlib.suppress(psutil.Error):
                rss += child.memory_info().rss
                child_times = child.cpu_times()
                cpu_sec += child_times.user + child_times.system
        return {
            "rss_bytes": float(rss),
            "cpu_percent": self._process.cpu_percent(None),
            "cpu_seconds": cpu_sec,
        }

    def _children(self) -> list[psutil.Process]:
        try:
            return self._process.children(recursive=True)
        except psutil.Error:
            return []


Snapshot = Mapping[str, Mapping[str, Any]]


class PrometheusCollector(Collector):
    """Turns the manager's latest per-service snapshots into ``dsa110_*`` families."""

    def __init__(
        self,
        snapshots: Callable[[], Snapshot],
        process: Callable[[], Mapping[str, float]],
        breakers: Callable[[], Sequence[BreakerSnapshot]] = list,
    ):
        self._snapshots = snapshots
        self._process = process
        self._breakers = breakers

    def collect(self) -> Iterator[Any]:
        services = self._snapshots()
        processed = CounterMetricFamily(
            "dsa110_jobs_processed", "Jobs completed by a service.", labels=["service"]
        )
        failed = CounterMetricFamily(
            "dsa110_jobs_failed", "Jobs that failed in a service.", labels=["service"]
        )
        restarts = CounterMetricFamily(
            "dsa110_service_restarts", "Restarts of a service after a crash.", labels=["service"]
        )
        lag = GaugeMetricFamily(
            "dsa110_queue_lag_seconds", "Age of the oldest waiting work.", labels=["service"]
        )
        backlog = GaugeMetricFamily(
            "dsa110_backlog", "Work items waiting for a service.", labels=["service"]
        )
        health = GaugeMetricFamily(
            "dsa110_service_health",
            "0 healthy, 1 degraded, 2 unhealthy, 3 stopping.",
            labels=["service"],
        )
        duration = GaugeMetricFamily(
            "dsa110_job_duration_seconds",
            "Recent job duration quantiles.",
            labels=["service", "quantile"],
        )
        results = CounterMetricFamily(
            "dsa110_results",
            "Results a service produced (sets converted, chunks, blocks, analysis runs).",
            labels=["service", "kind"],
        )
        dead = GaugeMetricFamily(
            "dsa110_dead_letters",
            "Dead letters waiting in the streams a service consumes.",
            labels=["service"],
        )
        stages = GaugeMetricFamily(
            "dsa110_stage_duration_seconds",
            "Recent duration quantiles of one step of a job (conversion, block).",
            labels=["service", "stage", "quantile"],
        )
        flagged = GaugeMetricFamily(
            "dsa110_flag_fraction",
            "Fraction of the last processed block's samples that are flagged.",
            labels=["service"],
        )
        bad_antennas = GaugeMetricFamily(
            "dsa110_bad_antennas",
            "Antennas the last processed block's flag stage found dead, hot or unstable.",
            labels=["service"],
        )
        for name, snap in services.items():
            metrics = snap.get("metrics", {})
            processed.add_metric([name], metrics.get("processed", 0))
            failed.add_metric([name], metrics.get("failed", 0))
            restarts.add_metric([name], snap.get("restarts", 0))
            lag.add_metric([name], metrics.get("queue_lag_sec", 0.0))
            backlog.add_metric([name], metrics.get("backlog", 0))
            health.add_metric([name], snap.get("severity", 0))
            for key, value in metrics.get("duration_sec", {}).items():
                duration.add_metric([name, f"{int(key[1:]) / 100:g}"], value)
            for kind, count in metrics.get("counters", {}).items():
                if kind in RESULT_KINDS:
                    results.add_metric([name, kind], count)
            dead.add_metric([name], metrics.get("dead_letters", 0))
            if metrics.get("flag_fraction") is not None:
                flagged.add_metric([name], metrics["flag_fraction"])
            if metrics.get("bad_antennas") is not None:
                bad_antennas.add_metric([name], metrics["bad_antennas"])
            for stage, quantiles in metrics.get("stage_sec", {}).items():
                for key, value in quantiles.items():
                    stages.add_metric([name, stage, f"{int(key[1:]) / 100:g}"], value)
        yield from (processed, failed, restarts, lag, backlog, health, duration)
        yield from (results, dead, stages, flagged, bad_antennas)
        yield from _calibration_families(services)
        yield from self._breaker_families()
        proc = self._process()
        yield GaugeMetricFamily(
            "dsa110_process_resident_memory_bytes",
            "RSS of the daemon and its worker processes.",
            value=proc["rss_bytes"],
        )
        yield CounterMetricFamily(
            "dsa110_process_cpu_seconds",
            "CPU time of the daemon and its worker processes.",
            value=proc["cpu_seconds"],
        )

    def _breaker_families(self) -> Iterator[Any]:
        state = GaugeMetricFamily(
            "dsa110_circuit_breaker_state",
            "0 closed, 1 half-open (one probe allowed), 2 open (calls refused).",
            labels=["breaker"],
        )
        failures = GaugeMetricFamily(
            "dsa110_circuit_breaker_failures",
            "Consecutive failures behind a breaker.",
            labels=["breaker"],
        )
        for snap in self._breakers():
            state.add_metric([snap.name], BREAKER_GAUGE[snap.state])
            failures.add_metric([snap.name], snap.consecutive_failures)
        yield from (state, failures)


def _calibration_families(services: Snapshot) -> Iterator[Any]:
    """The calibration registry's families, from the services that report it (processors)."""
    solutions = GaugeMetricFamily(
        "dsa110_calibration_solutions",
        "Calibration solutions registered, by kind and status (ok, poor, superseded).",
        labels=["service", "kind", "status"],
    )
    age = GaugeMetricFamily(
        "dsa110_calibration_bandpass_age_seconds",
        "Data time processed since the newest valid bandpass's calibrator transit (since the "
        "first calibrated block when there is none).",
        labels=["service"],
    )
    valid = GaugeMetricFamily(
        "dsa110_calibration_bandpass_valid",
        "1 when a valid bandpass covers the newest calibrated block, else 0.",
        labels=["service"],
    )
    amp = GaugeMetricFamily(
        "dsa110_calibration_gain_amp_scatter",
        "Amplitude scatter (fraction) of the newest gain solution.",
        labels=["service"],
    )
    phase = GaugeMetricFamily(
        "dsa110_calibration_gain_phase_scatter_degrees",
        "Phase scatter (degrees) of the newest gain solution.",
        labels=["service"],
    )
    qa_ok = GaugeMetricFamily(
        "dsa110_calibration_gain_qa_ok",
        "1 when the newest gain solution is ok and within calibration.gain_*_max, else 0.",
        labels=["service"],
    )
    for name, snap in services.items():
        cal = snap.get("metrics", {}).get("calibration")
        if not cal:
            continue
        for kind, by_status in (cal.get("solutions") or {}).items():
            for status, count in by_status.items():
                solutions.add_metric([name, kind, status], count)
        if cal.get("bandpass_age_sec") is not None:
            age.add_metric([name], cal["bandpass_age_sec"])
            valid.add_metric([name], 1.0 if cal.get("bandpass_valid") else 0.0)
        if cal.get("gains_amp_scatter") is not None:
            amp.add_metric([name], cal["gains_amp_scatter"])
            phase.add_metric([name], cal["gains_phase_scatter_deg"])
            qa_ok.add_metric([name], 1.0 if cal.get("gains_qa_ok") else 0.0)
    yield from (solutions, age, valid, amp, phase, qa_ok)


def serve_prometheus(host: str, port: int, collector: Collector) -> Callable[[], None]:
    """Serve ``collector`` on ``http://host:port/metrics`` in a thread; returns a stopper."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
