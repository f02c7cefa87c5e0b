"""Restart backoff of the ServiceManager."""

from __future__ import annotations

from dsa110d.supervisor import backoff_delay


def test_backoff_grows_exponentially_with_jitter_and_stops_at_the_cap() -> None:
    assert backoff_delay(0, 0.5, 30, lambda: 1.0) == 0.5
    assert backoff_delay(3, 0.5, 30, lambda: 1.0) == 4.0
    assert backoff_delay(3, 0.5, 30, lambda: 0.0) == 2.0  # jitter: down to half
    assert backoff_delay(100, 0.5, 30, lambda: 1.0) == 30
