"""TraP's monitoring list: the new sources forced photometry measures from then on.

A new-source candidate (``candidates``: first detected in a block, with the earlier blocks
whose mosaics covered it) becomes a monitored source: a record with its position and first
block (:func:`monitored_records`). The state layer keeps the list (``state.monitored``); each
block run hands it to the photometry stage, which measures the monitored sources beside the
catalog's (:func:`with_monitored`), so a new source has a forced flux in every later block
and, once the earlier blocks that covered it are re-run, in those too: its light curve shows
the non-detections before it appeared, measured the same way as the detections.

A monitored source within ``SAME_SOURCE_ARCSEC`` of a catalog source is that source (the
catalog already measures it) and is not added twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dsa110d.science.catalog import Catalog

SAME_SOURCE_ARCSEC = 1.0
"""A monitored source this close to a catalog source is the catalog's (no second row)."""


@dataclass(frozen=True)
class MonitoredSource:
    """A monitored source as forced photometry needs it."""

    source_id: str
    ra_deg: float
    dec_deg: float
    flux_jy: float
    """Its brightest detected peak: the photometry solve's prior scale, nothing more."""

    def to_json(self) -> list[Any]:
        return [self.source_id, self.ra_deg, self.dec_deg, self.flux_jy]

    @classmethod
    def from_json(cls, doc: Sequence[Any]) -> MonitoredSource:
        return cls(str(doc[0]), float(doc[1]), float(doc[2]), float(doc[3]))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> MonitoredSource:
        return cls(
            str(record["candidate_id"]),
            float(record["ra_deg"]),
            float(record["dec_deg"]),
            float(record.get("peak_jy") or 0.0),
        )


def monitored_records(table: pd.DataFrame) -> list[tuple[dict[str, Any], list[str]]]:
    """Each candidate of a block's ``candidates/<block>.parquet`` as a monitored record, with
    the blocks to re-run for it: its first block (whose photometry ran before the search
    found it) and the earlier blocks whose mosaics covered it, oldest first."""
    out = []
    for row in table.itertuples(index=False):
        limits: Any = row.earlier_upper_limits
        earlier: list[dict[str, Any]] = (
            json.loads(limits) if isinstance(limits, str) else list(limits)
        )
        record = {
            "candidate_id": str(row.candidate_id),
            "ra_deg": float(row.ra_deg),  # type: ignore[arg-type]
            "dec_deg": float(row.dec_deg),  # type: ignore[arg-type]
            "first_block": str(row.first_block),
            "peak_jy": float(row.peak_jy),  # type: ignore[arg-type]
            "earlier_upper_limits": earlier,
        }
        blocks = sorted({str(e["block_id"]) for e in earlier} | {str(row.first_block)})
        out.append((record, blocks))
    return out


def read_candidates(path: Path) -> pd.DataFrame:
    """A block's published candidates table."""
    return pd.read_parquet(path)


def with_monitored(catalog: Catalog, monitored: Iterable[MonitoredSource]) -> Catalog:
    """The catalog and, after it, the monitored sources it does not already hold."""
    extra = [m for m in monitored if m.source_id not in set(catalog.ids)]
    if len(catalog) and extra:
        ra = np.radians(catalog.ra_deg)
        dec = np.radians(catalog.dec_deg)
        keep = []
        for m in extra:
            r, d = math.radians(m.ra_deg), math.radians(m.dec_deg)
            cos = np.sin(dec) * math.sin(d) + np.cos(dec) * math.cos(d) * np.cos(ra - r)
            nearest = math.degrees(math.acos(min(1.0, float(np.max(cos))))) * 3600.0
            if nearest > SAME_SOURCE_ARCSEC:
                keep.append(m)
        extra = keep
    if not extra:
        return catalog
    return Catalog(
        catalog.ids + tuple(m.source_id for m in extra),
        np.concatenate([catalog.ra_deg, [m.ra_deg for m in extra]]),
        np.concatenate([catalog.dec_deg, [m.dec_deg for m in extra]]),
        np.concatenate([catalog.flux_jy, [m.flux_jy for m in extra]]),
        {k: (*v, *("" for _ in extra)) for k, v in catalog.extra.items()},
    )
