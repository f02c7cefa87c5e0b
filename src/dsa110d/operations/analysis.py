"""``dsa110ctl recompute``: ask the variability analyzer for a full recompute.

The request is one key on the state server
(:meth:`~dsa110d.state.analysis.AnalysisQueue.request_full`), so whichever analyzer host looks
next runs it (at once: a request makes a run due now), and it survives until a run that took it
succeeds. The answer says what an operator needs to know next: how many analyzers are
registered to pick it up, how many noted blocks the run takes too, and how the last run went.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from dsa110d.config import Config
from dsa110d.operations.session import open_state
from dsa110d.state.analysis import AnalysisQueue
from dsa110d.state.connection import describe_target
from dsa110d.state.keys import Keys
from dsa110d.state.registry import Registry

ANALYZER_SERVICE = "analyzer"


@dataclass(frozen=True)
class RecomputeRequest:
    """A recorded full-recompute request and what the analysis queue looks like after it."""

    requested_at: float
    analyzers: int
    """Analyzer services registered now (0: the run waits until one starts)."""
    pending_blocks: int
    last_finished: float | None
    last_status: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def request_recompute(config: Config) -> RecomputeRequest:
    """Record a full-recompute request; the next analyzer to look runs it."""
    target = describe_target(config)
    keys = Keys(config.redis.namespace)
    async with open_state(config) as redis:
        queue = AnalysisQueue(redis, keys, target=target)
        now = time.time()
        await queue.request_full(now)
        outlook = await queue.outlook()
        entries = await Registry(redis, keys, target).entries()
    return RecomputeRequest(
        requested_at=now,
        analyzers=sum(e.service == ANALYZER_SERVICE for e in entries),
        pending_blocks=outlook.pending,
        last_finished=outlook.last_finished,
        last_status=outlook.last_status,
    )
