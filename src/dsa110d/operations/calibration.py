"""``dsa110ctl cal list|show|resolve`` and ``/api/v1/cal``: the registry of calibration
solutions (:mod:`dsa110d.state.calibration`) as the operators ask about it.

Times are given as an MJD (``61119.25``), an ISO 8601 UTC time (``2026-03-20T06:00:00``,
``...Z`` or with an offset) or ``now``; every solution is shown with its validity in both.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from dsa110d.config import Config
from dsa110d.errors import BadRequestError, NotFoundError
from dsa110d.operations.session import open_state
from dsa110d.state.calibration import (
    KINDS,
    SOLUTION_ID,
    STATUSES,
    Calibrations,
    CalSolution,
    mjd_to_unix,
    unix_to_mjd,
)
from dsa110d.state.connection import describe_target
from dsa110d.state.keys import Keys

__all__ = ["KINDS", "STATUSES", "list_solutions", "parse_time", "resolve", "show_solution"]

MJD_RANGE = (40587.0, 88069.0)
"""Times accepted as MJDs: 1970 to 2100 (a number outside is a typo, not a time)."""


def parse_time(text: str, now: float | None = None) -> float:
    """An MJD from ``text``: an MJD, an ISO 8601 time (UTC unless it says otherwise) or
    ``now``. BadRequestError otherwise."""
    text = text.strip()
    if text.lower() == "now":
        return unix_to_mjd(time.time() if now is None else now)
    try:
        mjd = float(text)
    except ValueError:
        pass
    else:
        if not (math.isfinite(mjd) and MJD_RANGE[0] <= mjd <= MJD_RANGE[1]):
            raise BadRequestError(f"time {text[:40]!r}: not an MJD between 1970 and 2100")
        return mjd
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequestError(
            f"time {text[:40]!r} is not an MJD, an ISO 8601 time or 'now'"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return unix_to_mjd(stamp.timestamp())


def utc_of(mjd: float) -> str:
    """``2026-03-20T06:00:00Z`` for an MJD (to the second)."""
    return datetime.fromtimestamp(round(mjd_to_unix(mjd)), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def solution_row(solution: CalSolution) -> dict[str, Any]:
    """A solution as the CLI and the API show it: its fields, its effective status and its
    validity in UTC too."""
    return {
        **solution.to_dict(),
        "valid_from_utc": utc_of(solution.valid_from_mjd),
        "valid_to_utc": utc_of(solution.valid_to_mjd),
        "registered_utc": utc_of(unix_to_mjd(solution.registered_at))
        if solution.registered_at
        else None,
    }


def _check(kind: str | None, status: str | None) -> None:
    if kind is not None and kind not in KINDS:
        raise BadRequestError(f"kind: {kind[:40]!r} is not one of {', '.join(KINDS)}")
    if status is not None and status not in STATUSES:
        raise BadRequestError(f"status: {status[:40]!r} is not one of {', '.join(STATUSES)}")


async def list_solutions(
    config: Config, kind: str | None = None, status: str | None = None, limit: int = 0
) -> list[dict[str, Any]]:
    """Solutions newest first (by the start of their validity), of ``kind``, in effective
    ``status`` (ok, poor, superseded); the newest ``limit`` (0: all)."""
    _check(kind, status)
    async with open_state(config) as redis:
        registry = Calibrations(redis, Keys(config.redis.namespace), describe_target(config))
        found = await registry.solutions(kind, status, limit)
    return [solution_row(s) for s in found]


async def show_solution(config: Config, solution_id: str) -> dict[str, Any]:
    """One solution by id (NotFoundError when none is registered)."""
    if not SOLUTION_ID.match(solution_id):
        raise BadRequestError(f"{solution_id[:60]!r} is not a solution id")
    async with open_state(config) as redis:
        registry = Calibrations(redis, Keys(config.redis.namespace), describe_target(config))
        found = await registry.solution(solution_id)
    if found is None:
        raise NotFoundError(f"no calibration solution {solution_id!r}")
    return solution_row(found)


async def resolve(config: Config, when: str) -> dict[str, Any]:
    """What applies at ``when`` (see :func:`parse_time`): the newest valid bandpass and the
    gains covering it, each None when there is none."""
    mjd = parse_time(when)
    async with open_state(config) as redis:
        registry = Calibrations(redis, Keys(config.redis.namespace), describe_target(config))
        found = await registry.resolve(mjd)
    return {
        "mjd": mjd,
        "utc": utc_of(mjd),
        "bandpass": solution_row(found.bandpass) if found.bandpass else None,
        "gains": solution_row(found.gains) if found.gains else None,
    }
