"""What ``dsa110ctl fast-alerts`` and the console's ``/fast-alerts`` show: the newest fast
alerts (a bright new source in one chunk's image), with their status (pending, confirmed or
retracted by the block's mosaic)."""

from __future__ import annotations

from typing import Any

from dsa110d.config import Config
from dsa110d.operations.session import open_state
from dsa110d.state.connection import describe_target
from dsa110d.state.fast_alerts import FastAlerts
from dsa110d.state.keys import Keys

STATUSES = ("pending", "confirmed", "retracted")


async def latest_fast_alerts(
    config: Config, limit: int = 100, status: str | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` fast alerts, newest first (only ``status``, when given)."""
    async with open_state(config) as redis:
        store = FastAlerts(redis, Keys(config.redis.namespace), describe_target(config))
        found = await store.latest(limit)
    return [a for a in found if status is None or a.get("status") == status]
