"""Fast alerts in Redis: each recorded once, then settled by its block's mosaic.

Layout (names from :class:`~dsa110d.state.keys.Keys`):

* ``fast_alerts()`` — a hash of alert id (``<chunk id>/<name>``) -> JSON record
  (``science.imaging.fast``: position, peak, snr, status ``pending`` -> ``confirmed`` or
  ``retracted``);
* ``fast_alert_index()`` — the ids scored by detection time (newest first for listing);
* ``fast_searched()`` — chunk id -> JSON list of its alert ids: the chunk was searched (a
  redelivered announcement does not image it again).

The writes are staged into a caller's fenced transaction (``Leases.run_fenced``: the chunk's
search lease ``fast:<chunk id>`` for its alerts, the block's for their verdicts), so a holder
that lost its lease records nothing. A new alert is written with HSETNX: a second search of
the same chunk never replaces the first record (its detection time, its status).
"""

from __future__ import annotations

import json
from typing import Any

from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.keys import Keys


class FastAlerts:
    """Record, settle and list fast alerts."""

    def __init__(self, redis: Redis, keys: Keys, target: str = "the state server") -> None:
        self.redis = redis
        self.keys = keys
        self.target = target

    async def searched(self, chunk_id: str) -> bool:
        with translate_errors(self.target):
            return bool(await self.redis.hexists(self.keys.fast_searched(), chunk_id))  # type: ignore[misc]

    async def new_ids(self, alerts: list[dict[str, Any]]) -> set[str]:
        """The ids among ``alerts`` not yet recorded (read before a fenced commit)."""
        if not alerts:
            return set()
        ids = [str(a["alert_id"]) for a in alerts]
        with translate_errors(self.target):
            stored = await self.redis.hmget(self.keys.fast_alerts(), ids)  # type: ignore[misc]
        return {i for i, value in zip(ids, stored, strict=True) if value is None}

    def stage_record(self, pipe: Any, chunk_id: str, alerts: list[dict[str, Any]]) -> None:
        """Queue a chunk's alerts (each only if new) and its searched mark on ``pipe``."""
        k = self.keys
        for alert in alerts:
            pipe.hsetnx(k.fast_alerts(), alert["alert_id"], json.dumps(alert, allow_nan=False))
            pipe.zadd(k.fast_alert_index(), {alert["alert_id"]: alert["detected_at"]}, nx=True)
        pipe.hset(k.fast_searched(), chunk_id, json.dumps([a["alert_id"] for a in alerts]))

    def stage_settle(self, pipe: Any, settled: list[dict[str, Any]]) -> None:
        """Queue the settled records (they replace the pending ones) on ``pipe``."""
        for alert in settled:
            pipe.hset(
                self.keys.fast_alerts(), alert["alert_id"], json.dumps(alert, allow_nan=False)
            )

    async def of_chunks(self, chunk_ids: list[str]) -> list[dict[str, Any]]:
        """The recorded alerts of these chunks."""
        if not chunk_ids:
            return []
        k = self.keys
        with translate_errors(self.target):
            lists = await self.redis.hmget(k.fast_searched(), chunk_ids)  # type: ignore[misc]
            ids = [i for raw in lists if raw for i in json.loads(raw)]
            rows = await self.redis.hmget(k.fast_alerts(), ids) if ids else []  # type: ignore[misc]
        return [json.loads(r) for r in rows if r]

    async def latest(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` alerts, newest first."""
        k = self.keys
        with translate_errors(self.target):
            ids = await self.redis.zrevrange(k.fast_alert_index(), 0, max(limit, 1) - 1)
            rows = await self.redis.hmget(k.fast_alerts(), ids) if ids else []  # type: ignore[misc]
        return [json.loads(r) for r in rows if r]
