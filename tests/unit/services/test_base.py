"""Health aggregation of the Service interface."""

from __future__ import annotations

from dsa110d.services.base import Health, HealthReport, worst


def test_the_worst_health_wins_and_names_its_service() -> None:
    reports = [
        ("watcher", HealthReport.healthy()),
        ("processor", HealthReport(Health.UNHEALTHY, "circuit open")),
        ("analyzer", HealthReport(Health.DEGRADED, "backlog 60")),
    ]
    assert worst(reports) == HealthReport(Health.UNHEALTHY, "processor: circuit open")
    assert worst(reports[:1]) == HealthReport.healthy()
