"""The times ``dsa110ctl cal resolve`` and ``/api/v1/cal/resolve`` accept."""

from __future__ import annotations

import pytest

from dsa110d.errors import BadRequestError
from dsa110d.operations.calibration import parse_time, utc_of


@pytest.mark.parametrize(
    "text",
    ["61119.25", "2026-03-20T06:00:00", "2026-03-20T06:00:00Z", "2026-03-20T08:00:00+02:00"],
)
def test_an_mjd_or_an_iso_time_in_any_zone(text: str) -> None:
    assert parse_time(text) == pytest.approx(61119.25, abs=1e-9)
    assert utc_of(parse_time(text)) == "2026-03-20T06:00:00Z"


def test_now_is_the_clock() -> None:
    assert parse_time("now", now=1773986400.0) == pytest.approx(61119.25)


@pytest.mark.parametrize("text", ["yesterday", "1e9", "nan", "-5", "2026-13-01"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(BadRequestError):
        parse_time(text)
