"""When an analysis run is due: debounced notes, full requests, the interval, failed runs."""

from __future__ import annotations

import math

from dsa110d.state.analysis import DEBOUNCE_CAP, Outlook, retry_delay, seconds_until_due

DEBOUNCE = 30.0
INTERVAL = 3600.0
NOW = 1_000_000.0


def due(outlook: Outlook) -> float:
    return seconds_until_due(outlook, NOW, debounce_sec=DEBOUNCE, interval_sec=INTERVAL)


def outlook(**kw: object) -> Outlook:
    base: dict[str, object] = {
        "pending": 0,
        "first_noted": None,
        "last_noted": None,
        "full": False,
        "last_finished": NOW - 10,
        "last_status": "ok",
    }
    base.update(kw)
    return Outlook(**base)  # type: ignore[arg-type]


def test_nothing_pending_waits_for_the_interval() -> None:
    assert due(outlook()) == INTERVAL - 10
    assert due(outlook(last_finished=NOW - INTERVAL - 1)) == 0.0


def test_notes_wait_until_they_pause_for_the_debounce() -> None:
    assert due(outlook(pending=3, first_noted=NOW - 5, last_noted=NOW - 1)) == DEBOUNCE - 1
    assert due(outlook(pending=3, first_noted=NOW - 40, last_noted=NOW - 31)) == 0.0


def test_a_steady_stream_of_notes_still_runs_after_the_cap() -> None:
    first = NOW - DEBOUNCE_CAP * DEBOUNCE
    assert due(outlook(pending=1, first_noted=first, last_noted=NOW)) == 0.0


def test_a_full_request_is_due_at_once() -> None:
    assert due(outlook(full=True, first_noted=NOW, last_noted=NOW)) == 0.0


def test_after_a_failed_run_the_notes_wait_for_the_retry_delay() -> None:
    failed = outlook(pending=1, first_noted=NOW - 100, last_noted=NOW - 100, last_status="timeout")
    assert math.isclose(due(failed), retry_delay(INTERVAL, DEBOUNCE) - 10)
