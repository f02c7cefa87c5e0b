"""``dsa110ctl recompute``: ask the variability analyzer for a full recompute; and
``dsa110ctl lightcurve``: one source's light curve from the photometry files.

The request is one key on the state server
(:meth:`~dsa110d.state.analysis.AnalysisQueue.request_full`), so whichever analyzer host looks
next runs it (at once: a request makes a run due now), and it survives until a run that took it
succeeds. The answer says what an operator needs to know next: how many analyzers are
registered to pick it up, how many noted blocks the run takes too, and how the last run went.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsa110d.config import Config
from dsa110d.operations.session import open_state
from dsa110d.state.analysis import AnalysisQueue
from dsa110d.state.connection import describe_target
from dsa110d.state.keys import Keys
from dsa110d.state.registry import Registry

if TYPE_CHECKING:
    import pandas as pd

ANALYZER_SERVICE = "analyzer"
LIGHT_CURVE_FORMATS = ("csv", "votable")


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


def light_curve(config: Config, source_id: str) -> pd.DataFrame:
    """One source's light curve read from ``paths.results_dir/photometry`` through the one
    photometry reader (``science/photometry/table``): the latest version of each block, time
    order, flag names and ``usable``. Empty when no file measured the source."""
    from dsa110d.science.photometry import (
        table as photometry_table,  # pandas only for the commands that need it
    )

    return photometry_table.light_curve(config.paths.results_dir, source_id)


LIGHT_CURVE_FIELDS = ("block_id", "mjd", "flux_jy", "flux_err_jy", "flag_names", "usable")


def light_curve_records(curve: pd.DataFrame) -> list[dict[str, Any]]:
    """The light curve as JSON-able dicts (exact doubles; NaN and NA become null)."""
    import pandas as pd

    cols = [c for c in LIGHT_CURVE_FIELDS if c in curve]
    return [
        {
            name: None if pd.isna(value) else (value.item() if hasattr(value, "item") else value)
            for name, value in zip(cols, row, strict=True)
        }
        for row in curve[cols].astype(object).itertuples(index=False, name=None)
    ]


def export_light_curve(curve: pd.DataFrame, fmt: str, path: Path) -> Path:
    """Write a light curve as ``csv`` or ``votable`` (IVOA VOTable, units and UCDs)."""
    from dsa110d.science.variability import formats as lightcurve_formats

    if fmt == "csv":
        return lightcurve_formats.write_light_curve_csv(curve, path)
    return lightcurve_formats.write_light_curve_votable(curve, path)
