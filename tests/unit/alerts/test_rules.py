"""The alert rules as pure functions: which conditions hold for given facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsa110d.alerts import rules
from dsa110d.alerts.rules import DiskView, Facts
from dsa110d.config import Config
from dsa110d.state.alerts import QueueView
from dsa110d.state.blocks import BlockRecord, BlockState
from dsa110d.state.registry import RegistryEntry
from tests.conftest import make_config


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_config(tmp_path)


def entry(health: str, host: str = "obs1", service: str = "watcher") -> RegistryEntry:
    return RegistryEntry(host, 42, service, health, "why", "t0", "1")


def facts(**kw: object) -> Facts:
    base: dict[str, object] = dict(
        host="obs1", pid=42, registry=[], queues=[], incomplete_sets=[], disks=[],
        crashes_in_window=0,
    )  # fmt: skip
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def test_nothing_wrong_means_no_condition(cfg: Config) -> None:
    healthy = facts(
        registry=[entry("HEALTHY")],
        queues=[QueueView("ns:hdf5_processing", 1.0, 0, None)],
        disks=[DiskView("/data", 50, 100)],
    )
    assert rules.evaluate(healthy, cfg) == []


def test_unhealthy_and_degraded_hold_for_their_configured_times(cfg: Config) -> None:
    found = rules.evaluate(facts(registry=[entry("UNHEALTHY"), entry("DEGRADED", "obs2")]), cfg)
    by_rule = {c.rule: c for c in found}
    assert by_rule["service_unhealthy"].hold_sec == cfg.alerts.unhealthy_for_sec
    assert by_rule["service_unhealthy"].severity == "critical"
    assert by_rule["service_degraded"].hold_sec == cfg.alerts.degraded_for_min * 60
    # the fingerprint names the service's host, never the observer: two daemons agree
    assert by_rule["service_unhealthy"].fingerprint == "unhealthy:obs1:watcher"
    assert by_rule["service_degraded"].fingerprint == "degraded:obs2:watcher"


def test_restart_intensity_fires_at_the_configured_fraction(cfg: Config) -> None:
    threshold = rules.restart_threshold(cfg)  # 0.8 * 5 restarts -> 4
    assert threshold == 4
    assert rules.evaluate(facts(crashes_in_window=threshold - 1), cfg) == []
    [cond] = rules.evaluate(facts(crashes_in_window=threshold), cfg)
    assert cond.rule == "restart_intensity"
    assert cond.fingerprint == "restart-intensity:obs1:42"


def test_dead_letters_growing_and_queue_lag(cfg: Config) -> None:
    window, lag = cfg.alerts.dead_letters_window_sec, cfg.alerts.queue_lag_sec
    queues = [
        QueueView("ns:a", lag + 1, 3, window - 1),  # both
        QueueView("ns:b", lag - 1, 3, window + 1),  # old dead letters, short lag: neither
    ]
    found = {c.fingerprint for c in rules.evaluate(facts(queues=queues), cfg)}
    assert found == {"dead-letters:ns:a", "queue-lag:ns:a"}


def test_incomplete_sets_make_one_alert_naming_the_oldest(cfg: Config) -> None:
    sets = [("2026-01-01T00:00:00", 50.0), ("2026-01-01T00:05:00", 900.0)]
    [cond] = rules.evaluate(facts(incomplete_sets=sets), cfg)
    assert cond.fingerprint == "incomplete-sets"
    assert "2026-01-01T00:05:00" in cond.summary
    assert cond.details["count"] == 2


def test_disk_free_below_the_fraction(cfg: Config) -> None:
    minimum = cfg.alerts.disk_free_min_fraction
    disks = [DiskView("/data/ms", int(minimum * 1000) - 1, 1000), DiskView("/data/x", 500, 1000)]
    [cond] = rules.evaluate(facts(disks=disks), cfg)
    assert cond.fingerprint == "disk-free:obs1:/data/ms"
    assert cond.severity == "critical"


def test_a_service_paused_by_an_operator_raises_no_alert(cfg: Config) -> None:
    paused = RegistryEntry("obs1", 42, "watcher", "DEGRADED", "paused by an operator", "t0", "1",
                           state="paused")  # fmt: skip
    assert rules.evaluate(facts(registry=[paused]), cfg) == []


def _block(block_id: str, qa: dict[str, object], version: int = 1) -> BlockRecord:
    return BlockRecord(block_id, 0.0, 3600.0, BlockState.PROCESSED, version, 1, 1, qa=qa)


def test_a_block_flagged_above_the_threshold_is_noticed_once_per_run(cfg: Config) -> None:
    limit = cfg.flagging.alert_flag_fraction
    blocks = [
        _block(
            "b1", {"flag": {"flag_fraction": limit + 0.1, "bad_antennas": "3,40", "status": "ok"}}
        ),
        _block("b2", {"flag": {"flag_fraction": limit - 0.1}}),
        _block("b3", {"flag-mad": {"flag_fraction": 0.95, "status": "mostly_flagged"}}, 2),
        _block("b4", {"photometry": {"sources": 3}}),
    ]
    found = rules.flagged_block_conditions(blocks, cfg)
    assert [c.fingerprint for c in found] == ["block_flagged:b1:v1", "block_flagged:b3:v2"]
    assert all(c.rule == "block_flagged" and c.severity == "warning" for c in found)
    assert "bad antennas: 3,40" in found[0].summary
    assert "mostly_flagged" in found[1].summary
