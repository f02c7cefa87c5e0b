"""The watcher's probe cache: what probing a file found, by the file's identity.

A watched file is known by (path, size, mtime_ns, inode): a restart (or a rescan) that finds
the same identity takes the outcome recorded here instead of opening the file again, so a
daemon restarting on a directory of 10,000 known files probes none of them. A file rewritten
or replaced under its name has another identity and is probed again. One hash per host
(``Keys.probe_cache``), a field per path; entries of files that left the directory are
removed by the watcher's rescans (:meth:`ProbeCache.forget`).

Only an outcome of the file itself is kept (a good subband, or a file at fault); a file that
vanished while being probed is not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.keys import Keys

BATCH = 2000
"""Fields per HMGET / HSET / HDEL round trip."""

Identity = tuple[int, int, int]
"""(size, mtime_ns, inode)"""


class ProbeCache:
    """Probe outcomes of one host's watched files, by identity."""

    def __init__(self, redis: Redis, keys: Keys, host: str, target: str = "state server") -> None:
        self._redis = redis
        self._key = keys.probe_cache(host)
        self._target = target

    async def known(self, files: Sequence[tuple[str, Identity]]) -> dict[str, dict[str, Any]]:
        """The cached outcome of each file whose identity is the one cached."""
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(files), BATCH):
            part = files[i : i + BATCH]
            with translate_errors(self._target):
                raw = await self._redis.hmget(self._key, [p for p, _ in part])  # type: ignore[misc]
            for (path, identity), value in zip(part, raw, strict=True):
                if value is None:
                    continue
                try:
                    entry = json.loads(value)
                    if tuple(entry["id"]) == tuple(identity):
                        found[path] = entry["outcome"]
                except (ValueError, KeyError, TypeError):
                    continue  # an entry of another version, or damaged: probe again
        return found

    async def remember(self, outcomes: Iterable[tuple[str, Identity, dict[str, Any]]]) -> None:
        mapping = {
            path: json.dumps({"id": list(identity), "outcome": outcome}, separators=(",", ":"))
            for path, identity, outcome in outcomes
        }
        items = list(mapping.items())
        for i in range(0, len(items), BATCH):
            with translate_errors(self._target):
                await self._redis.hset(self._key, mapping=dict(items[i : i + BATCH]))  # type: ignore[misc]

    async def keep_only(self, present: set[str]) -> None:
        """Forget every file not in ``present`` (those that left while no watcher ran)."""
        with translate_errors(self._target):
            cached = await self._redis.hkeys(self._key)  # type: ignore[misc]
        await self.forget([p for p in cached if p not in present])

    async def forget(self, paths: Sequence[str]) -> None:
        for i in range(0, len(paths), BATCH):
            with translate_errors(self._target):
                await self._redis.hdel(self._key, *paths[i : i + BATCH])  # type: ignore[misc]
