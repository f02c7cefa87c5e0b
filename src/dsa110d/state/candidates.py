"""The latest variability candidates, kept in Redis for ``dsa110ctl candidates`` and alerts.

``Keys.candidates()`` is a hash of source id -> JSON candidate record (with its ``rank``,
transients first, then variables by eta: the analyzer's ranking), so its size is the number of
current candidates (what the alerting engine counts); ``Keys.candidates_run()`` holds the
run summary they came from. A run replaces both in one transaction, so a reader never sees
the candidates of one run with the summary of another.

:func:`fetch_candidates` is what the command line calls: the Redis copy, or, when it is empty
(a server that lost its data), the ``candidates.json`` the last run published on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsa110d.config import Config
from dsa110d.state.connection import Redis, connected, describe_target, translate_errors
from dsa110d.state.keys import Keys

RESULTS_CANDIDATES = Path("variability") / "candidates.json"
"""The newest run's candidates file under ``paths.results_dir`` (variability_results' layout)."""


@dataclass(frozen=True)
class CandidateReport:
    """The candidates of one run, best first, and where they came from."""

    run: dict[str, Any]
    candidates: list[dict[str, Any]] = field(default_factory=list)
    source: str = "redis"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "run": self.run, "candidates": self.candidates}


class CandidateStore:
    """Replace and read the latest candidates."""

    def __init__(self, redis: Redis, keys: Keys, *, target: str = "the state server") -> None:
        self.redis = redis
        self.keys = keys
        self.target = target

    @contextmanager
    def _guard(self) -> Iterator[None]:
        with translate_errors(self.target):
            yield

    async def replace(self, run: dict[str, Any], candidates: list[dict[str, Any]]) -> None:
        """Make these the current candidates (ranked in the given order), atomically."""
        fields = {
            str(c["source_id"]): json.dumps({**c, "rank": rank}, allow_nan=False)
            for rank, c in enumerate(candidates, start=1)
        }
        with self._guard():
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(self.keys.candidates())
            if fields:
                pipe.hset(self.keys.candidates(), mapping=fields)
            pipe.set(self.keys.candidates_run(), json.dumps(run, allow_nan=False))
            await pipe.execute()

    async def run_stamp(self) -> str | None:
        """The stored run summary as stored: it changes with every run (one small GET, for a
        reader that keeps the candidates it read and asks whether they are still current)."""
        with self._guard():
            stamp = await self.redis.get(self.keys.candidates_run())
        return None if stamp is None else str(stamp)

    async def latest(self) -> CandidateReport | None:
        """The stored candidates, best first; None when no run has stored any."""
        with self._guard():
            pipe = self.redis.pipeline(transaction=True)
            pipe.hgetall(self.keys.candidates())
            pipe.get(self.keys.candidates_run())
            fields, run = await pipe.execute()
        if run is None:
            return None
        records = [json.loads(v) for v in fields.values()]
        records.sort(key=lambda r: int(r.get("rank", 0)))
        return CandidateReport(json.loads(run), records)


def read_candidates_file(results_dir: Path) -> CandidateReport | None:
    """The newest run's candidates from disk; None when there is none (or it is unreadable)."""
    path = results_dir / RESULTS_CANDIDATES
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    records = [dict(r, rank=i) for i, r in enumerate(doc.get("candidates") or [], start=1)]
    run = {"run_time": doc.get("run_time"), "n_candidates": len(records)}
    return CandidateReport(run, records, source=str(path))


_KEPT: dict[tuple[str, str], tuple[str, CandidateReport]] = {}
"""(server, namespace) -> (run stamp, its candidates): a long-lived reader (the web console)
reads the ~1,000 records again only when a new run has replaced them."""


async def fetch_candidates(config: Config) -> CandidateReport | None:
    """The latest candidates for ``dsa110ctl candidates``: Redis first, then the results file."""
    keys = Keys(config.redis.namespace)
    target = describe_target(config)
    where = (target, config.redis.namespace)
    async with connected(config) as redis:
        store = CandidateStore(redis, keys, target=target)
        stamp = await store.run_stamp()
        kept = _KEPT.get(where)
        if stamp is not None and kept is not None and kept[0] == stamp:
            return kept[1]
        report = await store.latest()
    if report is not None and stamp is not None:
        # Read after the stamp: if a run landed in between, the next call sees a new stamp
        # and reads again, so a kept report is never older than its stamp says.
        _KEPT[where] = (stamp, report)
    return report or read_candidates_file(config.paths.results_dir)
