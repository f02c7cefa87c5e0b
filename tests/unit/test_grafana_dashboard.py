"""docs/grafana/dsa110d.json (installed under /usr/share/dsa110d/grafana by the .deb): every
panel's query names only metrics the daemon's /metrics page really carries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dsa110d.metrics import PrometheusCollector, ServiceMetrics

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana" / "dsa110d.json"
METRIC = re.compile(r"\bdsa110_[a-z0-9_]+")
WANTED = {
    "throughput": "dsa110_results_total",
    "lag": "dsa110_queue_lag_seconds",
    "restarts": "dsa110_service_restarts_total",
    "dead letters": "dsa110_dead_letters",
    "conversion and block times": "dsa110_stage_duration_seconds",
    "flag fraction": "dsa110_flag_fraction",
    "bandpass age": "dsa110_calibration_bandpass_age_seconds",
    "gain QA": "dsa110_calibration_gain_amp_scatter",
}


def served_metric_names() -> set[str]:
    """Every sample name on /metrics, from a processor's real ServiceMetrics that did work."""
    metrics = ServiceMetrics()
    with metrics.job():
        metrics.add("sets")
        metrics.observe("conversion", 120.0)
        metrics.observe("block", 300.0)
    metrics.dead_letters = 2
    metrics.flag_fraction = 0.032
    metrics.calibration = {
        "solutions": {"bandpass": {"ok": 1, "poor": 0, "superseded": 0}},
        "bandpass_age_sec": 3600.0, "bandpass_valid": True, "gains_amp_scatter": 0.02,
        "gains_phase_scatter_deg": 2.0, "gains_qa_ok": True,
    }  # fmt: skip
    snapshot = {"processor": {"metrics": metrics.snapshot(), "restarts": 1, "severity": 0}}
    process = {"rss_bytes": 1.0, "cpu_percent": 0.0, "cpu_seconds": 1.0}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PrometheusCollector(lambda: snapshot, lambda: process))
    text = generate_latest(registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def expressions() -> list[tuple[str, str]]:
    document = json.loads(DASHBOARD.read_text())
    found = []
    for panel in document["panels"]:
        assert panel["targets"], panel["title"]
        found += [(panel["title"], target["expr"]) for target in panel["targets"]]
    return found


def test_every_query_names_a_served_metric() -> None:
    served = served_metric_names()
    for title, expr in expressions():
        names = METRIC.findall(expr)
        assert names, f"{title}: {expr} names no dsa110_ metric"
        unknown = [n for n in names if n not in served]
        assert unknown == [], f"{title}: {unknown} not served (served: {sorted(served)})"


def test_the_dashboard_covers_what_operators_watch() -> None:
    used = {name for _, expr in expressions() for name in METRIC.findall(expr)}
    missing = {what: name for what, name in WANTED.items() if name not in used}
    assert missing == {}


def test_the_package_installs_it() -> None:
    install = (REPO / "debian" / "dsa110d.install").read_text().splitlines()
    assert "docs/grafana/dsa110d.json usr/share/dsa110d/grafana/" in install
