"""docs/prometheus-alerts.yaml: well-formed rule groups over metrics dsa110d really serves."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from dsa110d.metrics import PrometheusCollector

RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus-alerts.yaml"
SEVERITIES = {"info", "warning", "critical"}
DURATION = re.compile(r"^\d+[smhd]$")


def served_metric_names() -> set[str]:
    """Every sample name the daemon's /metrics page carries (with a sample service)."""
    snapshot = {
        "processor": {
            "metrics": {"processed": 1, "failed": 0, "queue_lag_sec": 1.0, "backlog": 2,
                        "duration_sec": {"p50": 1.0, "p90": 2.0, "p99": 3.0},
                        "flag_fraction": 0.1, "bad_antennas": 0,
                        "calibration": {"solutions": {"bandpass": {"ok": 1}},
                                        "bandpass_age_sec": 3600.0, "bandpass_valid": True,
                                        "gains_amp_scatter": 0.02,
                                        "gains_phase_scatter_deg": 2.0, "gains_qa_ok": True}},
            "restarts": 0,
            "severity": 0,
        }
    }  # fmt: skip
    process = {"rss_bytes": 1.0, "cpu_percent": 0.0, "cpu_seconds": 1.0}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PrometheusCollector(lambda: snapshot, lambda: process))
    text = generate_latest(registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    found = []
    for group in document["groups"]:
        assert set(group) == {"name", "rules"}
        found += group["rules"]
    return found


def test_every_rule_is_complete() -> None:
    names = []
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        names.append(rule["alert"])
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert DURATION.match(str(rule.get("for", "0s"))), rule
        assert rule["labels"]["severity"] in SEVERITIES  # type: ignore[index]
        assert rule["annotations"]["summary"]  # type: ignore[index]
    assert len(names) == len(set(names)) >= 8


def test_every_metric_named_is_one_the_daemon_serves() -> None:
    served = served_metric_names()
    named = {m for rule in rules() for m in re.findall(r"\bdsa110_[a-z_]+", str(rule["expr"]))}
    assert named, "the rules use dsa110_* metrics"
    assert named - served == set()


# promtool (Debian's prometheus) comes from `make test-deps`: without it this test fails.
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
