"""Writing the flag stage's flags into a Measurement Set and counting them (flag QA)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from casacore import tables
from numpy.typing import NDArray

from dsa110d.errors import InputFileError
from dsa110d.science.pipeline import flagging
from dsa110d.science.pipeline.autorfi import auto_rfi, window_channels
from dsa110d.science.pipeline.autos import read_autos

FLAGGED_BY = "aoflagger"
"""Value of the FLAGGED keyword this stage writes (the MAD flagger writes its threshold)."""
ROW_SLAB = 1 << 16
"""Rows read and written at once by the flag pass (at real scale ~100 MB of DATA)."""


@dataclass
class FlagCounts:
    """Flagged and total cross-correlation samples per antenna, channel and integration."""

    antennas: dict[int, list[int]] = field(default_factory=dict)
    """antenna -> [flagged, samples]."""
    channels: list[list[int]] = field(default_factory=list)
    """[flagged, samples] per channel (MS order)."""
    times: list[list[int]] = field(default_factory=list)
    """[flagged, samples] per integration (time order)."""
    freq_mhz: list[float] = field(default_factory=list)
    time_mjd_s: list[float] = field(default_factory=list)
    new: int = 0
    """Samples this pass flagged (all reasons)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "antennas": {str(a): v for a, v in self.antennas.items()},
            "channels": self.channels,
            "times": self.times,
            "freq_mhz": self.freq_mhz,
            "time_mjd_s": self.time_mjd_s,
            "new": self.new,
        }


def _static_channels(path: Path, ranges_mhz: Sequence[tuple[float, float]]) -> NDArray[np.bool_]:
    with tables.table(f"{path}::SPECTRAL_WINDOW", ack=False) as spw:
        freq = spw.getcol("CHAN_FREQ")[0] / 1e6
        width = np.abs(spw.getcol("CHAN_WIDTH")[0]) / 1e6
    mask = np.zeros(freq.shape, dtype=bool)
    for low, high in ranges_mhz:
        mask |= (freq + width / 2 > low) & (freq - width / 2 < high)
    return mask


def flag_and_count(
    path: Path,
    bad_antennas: Sequence[int],
    static_ranges_mhz: Sequence[tuple[float, float]],
    auto_sigma: float | None = None,
    auto_window_mhz: float = 6.0,
    burst_sigma: float | None = None,
    zeros: bool = True,
) -> dict[str, Any]:
    """Write the flags of step 3 into one MS (unless it was flagged before) and count the
    flags of its cross-correlations (step 4); JSON-able :class:`FlagCounts`. ``zeros``: flag
    the exact zeros (dropped packets), reading DATA; not needed after a flagger that did
    (the shipped AOFlagger strategy, the MAD flagger), and the pass then reads FLAG alone."""
    try:
        ms = tables.table(str(path), readonly=False, ack=False)
    except RuntimeError as exc:
        raise InputFileError(f"{path}: cannot open Measurement Set: {exc}") from None
    with ms:
        write = flagging.FLAGGED_KEYWORD not in ms.keywordnames()
        static = _static_channels(path, static_ranges_mhz)
        with tables.table(f"{path}::SPECTRAL_WINDOW", ack=False) as spw:
            freq_mhz = (spw.getcol("CHAN_FREQ")[0] / 1e6).tolist()
        times = ms.getcol("TIME")
        t_values, t_index = np.unique(times, return_inverse=True)
        ant1, ant2 = ms.getcol("ANTENNA1"), ms.getcol("ANTENNA2")
        antennas = np.unique(np.r_[ant1, ant2])
        n_ant = int(antennas.max()) + 1
        ant_flagged, ant_total = np.zeros(n_ant, np.int64), np.zeros(n_ant, np.int64)
        chan_flagged, chan_total = np.zeros(static.size, np.int64), np.zeros(static.size, np.int64)
        time_flagged = np.zeros(len(t_values), np.int64)
        time_total = np.zeros(len(t_values), np.int64)
        bad = np.isin(ant1, list(bad_antennas)) | np.isin(ant2, list(bad_antennas))
        interference = None
        if write and (auto_sigma is not None or burst_sigma is not None):
            window = window_channels(path, auto_window_mhz)
            interference = auto_rfi(read_autos(path), window, auto_sigma, burst_sigma)
        new = 0
        for r0 in range(0, ms.nrows(), ROW_SLAB):
            n = min(ROW_SLAB, ms.nrows() - r0)
            rows = slice(r0, r0 + n)
            flags = ms.getcol("FLAG", r0, n)
            if write:
                added = ms.getcol("DATA", r0, n) == 0 if zeros else np.zeros_like(flags)
                added[bad[rows]] = True
                added[ant1[rows] == ant2[rows]] = True
                added[:, static] = True
                if interference is not None and interference.size:
                    added |= interference[t_index[rows]][:, :, None]
                new += int(np.count_nonzero(added & ~flags))
                flags |= added
                ms.putcol("FLAG", flags, r0, n)
            cross = ant1[rows] != ant2[rows]
            sample = flags[cross].any(axis=2)  # a sample: (row, channel), either polarisation
            per_row = sample.sum(axis=1)
            n_chan = sample.shape[1]
            a1, a2, ti = ant1[rows][cross], ant2[rows][cross], t_index[rows][cross]
            for a in (a1, a2):
                ant_flagged += np.bincount(a, per_row, n_ant).astype(np.int64)
                ant_total += np.bincount(a, None, n_ant) * n_chan
            time_flagged += np.bincount(ti, per_row, len(t_values)).astype(np.int64)
            time_total += np.bincount(ti, None, len(t_values)) * n_chan
            chan_flagged += sample.sum(axis=0)
            chan_total += sample.shape[0]
        if write:
            ms.putkeyword(flagging.FLAGGED_KEYWORD, FLAGGED_BY)
    counts = FlagCounts(
        antennas={int(a): [int(ant_flagged[a]), int(ant_total[a])] for a in antennas},
        channels=[[int(f), int(t)] for f, t in zip(chan_flagged, chan_total, strict=True)],
        times=[[int(f), int(t)] for f, t in zip(time_flagged, time_total, strict=True)],
        freq_mhz=[float(f) for f in freq_mhz],
        time_mjd_s=[float(t) for t in t_values],
        new=new,
    )
    return counts.to_json()
