"""The flag QA of a block: fractions flagged per antenna, channel, integration and chunk,
and the block record's summary of them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dsa110d.config import Config
from dsa110d.science.pipeline.stage import MOSTLY_FLAGGED, BlockJob, SummaryValue

if TYPE_CHECKING:  # the record's readers (ctl, alerts) need not load casacore
    from dsa110d.science.pipeline.health import Health

WORST_LISTED = 10
"""Antennas and channels named in the stage's summary as the most flagged."""
QA_DIR = "flags"
"""Directory of the flag QA files under the results directory."""
FLAG_STAGES = ("flag", "flag-mad")
"""The stages whose summary carries the block's flag fraction (flag-mad names no antenna)."""


def flag_columns(qa: Mapping[str, Any]) -> tuple[float | None, list[str]]:
    """The flag fraction (None: no flag stage ran, or its MSs were flagged before) and the bad
    antennas' names from a block record's ``qa`` (each stage's summary)."""
    for stage in FLAG_STAGES:
        summary = qa.get(stage)
        if isinstance(summary, Mapping):
            value = summary.get("flag_fraction")
            fraction = float(value) if isinstance(value, int | float) else None
            names = [n for n in str(summary.get("bad_antennas") or "").split(",") if n]
            return fraction, names
    return None, []


def fraction(flagged: float, total: float) -> float:
    return flagged / total if total else 0.0


def block_qa(
    job: BlockJob, ms_paths: Sequence[Path], counts: Sequence[dict[str, Any]], health: Health
) -> dict[str, Any]:
    """The block's flag QA: fractions per antenna (name), channel, integration and chunk."""
    antennas: dict[int, list[int]] = {}
    for one in counts:
        for a, (f, t) in one["antennas"].items():
            total = antennas.setdefault(int(a), [0, 0])
            total[0] += f
            total[1] += t
    per_ms = [np.array(one["channels"], dtype=np.int64).reshape(-1, 2) for one in counts]
    channels = np.sum(per_ms, axis=0) if per_ms else np.zeros((0, 2), dtype=np.int64)
    flagged = sum(f for f, _ in antennas.values()) / 2  # each sample counted for both antennas
    samples = sum(t for _, t in antennas.values()) / 2
    return {
        "block_id": job.block_id,
        "version": job.version,
        "flag_fraction": fraction(flagged, samples),
        "samples": int(samples),
        "bad_antennas": {
            "dead": [str(a + 1) for a in health.dead],
            "hot": [str(a + 1) for a in health.hot],
            "unstable": [str(a + 1) for a in health.unstable],
        },
        "antenna_power_ratio": {str(a + 1): r for a, r in health.power_ratio.items()},
        "antennas": {str(a + 1): fraction(f, t) for a, (f, t) in sorted(antennas.items())},
        "channels": {
            "freq_mhz": counts[0]["freq_mhz"] if counts else [],
            "fraction": [fraction(f, t) for f, t in channels],
        },
        "chunks": [
            {
                "ms": path.name,
                "time_mjd_s": one["time_mjd_s"],
                "fraction": [fraction(f, t) for f, t in one["times"]],
            }
            for path, one in zip(ms_paths, counts, strict=True)
        ],
    }


def qa_path(config: Config, block_id: str) -> Path:
    return Path(config.paths.results_dir) / QA_DIR / f"{block_id}.flags.json"


def summary_of(qa: dict[str, Any], flagger: str, config: Config) -> dict[str, SummaryValue]:
    """The block record's flag QA: scalars and short JSON strings (the file has the rest)."""
    antennas: dict[str, float] = qa["antennas"]
    worst = sorted(antennas.items(), key=lambda kv: -kv[1])[:WORST_LISTED]
    freq, frac = qa["channels"]["freq_mhz"], qa["channels"]["fraction"]
    worst_ch = sorted(zip(freq, frac, strict=True), key=lambda fc: -fc[1])[:WORST_LISTED]
    bad = qa["bad_antennas"]
    fraction = float(qa["flag_fraction"])
    mostly = fraction > config.flagging.mostly_flagged_fraction
    return {
        "flagger": flagger,
        "status": MOSTLY_FLAGGED if mostly else "ok",
        "flag_fraction": fraction,
        "samples": int(qa["samples"]),
        "bad_antennas": ",".join(sorted({*bad["dead"], *bad["hot"], *bad["unstable"]}, key=int)),
        "dead_antennas": ",".join(bad["dead"]),
        "hot_antennas": ",".join(bad["hot"]),
        "unstable_antennas": ",".join(bad["unstable"]),
        "antenna_flag_fraction": json.dumps({a: round(f, 4) for a, f in antennas.items()}),
        "worst_channels_mhz": json.dumps([[round(f, 4), round(x, 4)] for f, x in worst_ch]),
        "worst_antennas": json.dumps([[a, round(f, 4)] for a, f in worst]),
        "chunk_flag_fraction": json.dumps(
            [
                round(float(np.mean(c["fraction"])) if c["fraction"] else 0.0, 4)
                for c in qa["chunks"]
            ]
        ),
        "alert": fraction > config.flagging.alert_flag_fraction,
    }
