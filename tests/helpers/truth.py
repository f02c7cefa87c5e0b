"""The simulator's truth file (``science.simulation.truth``) read back for tests and
benchmarks: its sources as a :class:`~dsa110d.science.catalog.Catalog`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from dsa110d.science.catalog import Catalog


def catalog_of(sources: Iterable[Mapping[str, Any]]) -> Catalog:
    """Truth source records (``id``, ``ra_deg``, ``dec_deg``, ``flux_jy``) as a catalog, in
    their order."""
    rows = list(sources)
    return Catalog(
        tuple(str(s["id"]) for s in rows),
        np.array([s["ra_deg"] for s in rows]),
        np.array([s["dec_deg"] for s in rows]),
        np.array([s["flux_jy"] for s in rows]),
    )
