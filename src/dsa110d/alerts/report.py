"""What ``dsa110ctl alerts`` shows: the stored alerts as rows, as JSON or a table."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from dsa110d.config import Config
from dsa110d.state.alerts import AlertStore
from dsa110d.state.connection import connected, describe_target
from dsa110d.state.keys import Keys


async def alert_rows(config: Config, active_only: bool) -> list[dict[str, Any]]:
    """Stored alerts, newest change first (only the firing ones with ``active_only``)."""
    async with connected(config) as redis:
        store = AlertStore(redis, Keys(config.redis.namespace), target=describe_target(config))
        return [asdict(r) for r in await store.records(active_only)]


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render_alerts(rows: list[dict[str, Any]]) -> str:
    """A plain table: status, severity, since, rule, summary."""
    if not rows:
        return "no alerts"
    lines = [f"{'STATUS':9} {'SEVERITY':9} {'SINCE':21} {'RULE':22} SUMMARY"]
    for r in rows:
        lines.append(
            f"{r['status']:9} {r['severity']:9} {_when(r['since']):21} {r['rule']:22} "
            f"{r['summary']}"
        )
    return "\n".join(lines)
