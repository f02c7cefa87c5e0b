"""The front page's derived figures: sets per hour, the real-time factor, the lag."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dsa110d.operations.overview import SET_CADENCE_SEC, lag, real_time_factor, sets_per_hour
from dsa110d.operations.queues import QueueRow
from dsa110d.operations.status import ServiceStatus

pytestmark = pytest.mark.unit

HOUR_0 = 1795003200.0  # 2026-11-18T12:00:00Z


def service(name: str, lag_sec: float = 0.0, p50: float | None = None) -> ServiceStatus:
    status = ServiceStatus("h", 1, name, "running", "HEALTHY", "", 1.0, 0.1, 0, 0, lag_sec, 0,
                           0, "0")  # fmt: skip
    return replace(status, duration_sec={} if p50 is None else {"p50": p50})


def test_sets_are_counted_per_utc_hour_of_their_observation() -> None:
    rows = ["2026-11-18T12:00:05", "2026-11-18T12:59:59", "2026-11-18T13:00:00", "not-a-set-id"]
    assert sets_per_hour(rows) == [{"hour": HOUR_0, "sets": 2}, {"hour": HOUR_0 + 3600, "sets": 1}]
    assert sets_per_hour(rows, hours=1) == [{"hour": HOUR_0 + 3600, "sets": 1}]


def test_real_time_factor_is_conversion_time_over_the_cadence() -> None:
    assert real_time_factor([service("watcher")]) is None
    factor = real_time_factor([service("processor", p50=SET_CADENCE_SEC / 2), service("watcher")])
    assert factor == pytest.approx(0.5)


def test_lag_is_the_oldest_waiting_work_anywhere() -> None:
    queue = QueueRow("HDF5_PROCESSING", "s", "g", 3, 1, 0, 1, 1, 42.0, 0)
    assert lag([service("processor", lag_sec=7.0)], [queue]) == 42.0
    assert lag([], []) == 0.0
