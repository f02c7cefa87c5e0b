"""The service registry: one heartbeat entry per (host, pid, service) that expires by itself.

Each entry is a JSON string under ``Keys.registry_entry`` written with a TTL, so a daemon
that dies without cleaning up vanishes from ``dsa110ctl status`` once its TTL runs out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from dsa110d.errors import StateError
from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.keys import Keys

SCAN_COUNT = 1000
"""Keys the server looks at per SCAN round trip: the registry's few keys live among every
record of the namespace, and the server's default (10) made ``status`` one round trip per ten
records."""


@dataclass(frozen=True)
class RegistryEntry:
    """What one service of one daemon last said about itself."""

    host: str
    pid: int
    service: str
    health: str
    reason: str
    started_at: str
    version: str
    state: str = "running"
    updated_at: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, text: str, key: str) -> RegistryEntry:
        """Parse one stored entry; a malformed one is a StateError naming its key."""
        try:
            data = json.loads(text)
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise StateError(f"registry entry {key}: malformed ({exc})") from None


class Registry:
    """Publish and read heartbeats of running services."""

    def __init__(self, redis: Redis, keys: Keys, target: str = "state server") -> None:
        self._redis = redis
        self._keys = keys
        self._target = target

    async def publish(self, entry: RegistryEntry, ttl_sec: float) -> None:
        """Write (or refresh) one entry; it disappears ``ttl_sec`` after the last refresh."""
        key = self._keys.registry_entry(entry.host, entry.pid, entry.service)
        with translate_errors(self._target):
            await self._redis.set(key, entry.to_json(), px=max(1, int(ttl_sec * 1000)))

    async def remove(self, host: str, pid: int, service: str) -> None:
        """Drop one entry now (a clean shutdown need not wait for the TTL)."""
        with translate_errors(self._target):
            await self._redis.delete(self._keys.registry_entry(host, pid, service))

    async def entries(self) -> list[RegistryEntry]:
        """Every live entry, sorted by host, pid and service; malformed ones are skipped."""
        with translate_errors(self._target):
            keys = [
                k
                async for k in self._redis.scan_iter(
                    match=self._keys.registry_pattern(), count=SCAN_COUNT
                )
            ]
            values = await self._redis.mget(keys) if keys else []
        found: list[RegistryEntry] = []
        for key, value in zip(keys, values, strict=True):
            if value is None:
                continue  # expired between SCAN and MGET
            try:
                found.append(RegistryEntry.from_json(value, key))
            except StateError:
                continue
        return sorted(found, key=lambda e: (e.host, e.pid, e.service))
