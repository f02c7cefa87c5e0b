"""The ``flag`` stage: AOFlagger, antenna health from the autocorrelations, a static channel
mask, and the flag statistics of the block (flag QA).

Run before calibration, on every Measurement Set of a block:

1. **Broadband bursts**: integrations swamped by one are flagged whole (:func:`flag_bursts`).
   **AOFlagger** (the ``aoflagger`` program of the Debian package of that name) with the DSA-110
   strategy shipped here (``strategies/dsa110.lua``, or ``flagging.strategy``) on the
   cross-correlations of the MSs not flagged before, in one run with a thread per core.
   Without the program the stage falls back to the MAD flagger (``flag-mad``), says so in
   its summary (``flagger``) and logs a warning: the data are flagged, less well.
2. **Antenna health** from the autocorrelations of the whole block: an antenna whose power is
   below ``flagging.dead_power_fraction`` of the array's median is *dead*, above
   ``flagging.hot_power_factor`` times it *hot*; one whose power relative to the array's
   (common changes, the Sun or the Galaxy, divided out) scatters by more than
   ``flagging.unstable_rms`` about a quadratic trend over the block is *unstable*. Each
   polarisation is judged on its own; an antenna bad in either is flagged in both.
3. **Flags written**: narrowband interference seen in the autocorrelations (:func:`auto_rfi`,
   on every baseline), every baseline of a bad antenna, the channels of
   ``flagging.static_channel_ranges_mhz``, exact zeros (dropped packets) and the
   autocorrelations (not used downstream), with the flags AOFlagger found and those already
   in the data. An MS is flagged once: the keyword :data:`flagging.FLAGGED_KEYWORD` marks it,
   and a block re-run (or the next block sharing the chunk) leaves its flags as they are.
4. **Flag QA**: the flagged fraction of the cross-correlations per antenna, per channel and
   per integration, written as ``flag_qa`` (JSON) beside the block's results, with its
   summary in the stage's summary (the block record's ``qa.flag``: ``flag_fraction``,
   ``bad_antennas``, the worst antennas and channels, the fraction per chunk). A block
   flagged above ``flagging.mostly_flagged_fraction`` is recorded ``mostly_flagged`` and
   the pipeline does not measure it (see :func:`stages.run_pipeline`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from casacore import tables
from numpy.typing import NDArray

from dsa110d.config import Config
from dsa110d.errors import DSA110Error, InputFileError, StageError, describe
from dsa110d.science.atomic import atomic_file
from dsa110d.science.isolate import run_forked_each
from dsa110d.science.pipeline import flagging
from dsa110d.science.pipeline.flagging import MAD_TO_SIGMA
from dsa110d.science.pipeline.stage import BlockJob, StageResult, SummaryValue

log = logging.getLogger(__name__)

AOFLAGGER = "aoflagger"
STRATEGY_PACKAGE = "dsa110d.science.pipeline.strategies"
STRATEGY_NAME = "dsa110.lua"
FLAGGED_BY = "aoflagger"
"""Value of the FLAGGED keyword this stage writes (the MAD flagger writes its threshold)."""
MIN_WINDOW_CHANNELS = 5
"""The fewest channels of the running median the autocorrelations are compared with."""
UNSTABLE_VS_ARRAY = 5.0
"""An unstable antenna scatters by more than this many times the array's median scatter."""
MIN_SAMPLES_FOR_TREND = 6
"""Integrations a block needs before antenna stability is judged (a quadratic has 3 terms)."""
ROW_SLAB = 1 << 16
"""Rows read and written at once by the flag pass (at real scale ~100 MB of DATA)."""
WORST_LISTED = 10
"""Antennas and channels named in the stage's summary as the most flagged."""
QA_DIR = "flags"
"""Directory of the flag QA files under the results directory."""
STATUS_MOSTLY_FLAGGED = "mostly_flagged"
BURST_PERCENTILE = 80.0
"""Percentile of a visibility's amplitudes over channels taken as its level (flag_bursts)."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Statistics over samples that may all be absent (NaN: dropped packets, zeros): their
    NaN result is expected and handled, so numpy's warnings about it are not wanted."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def strategy_path(config: Config) -> Path:
    """The AOFlagger strategy: ``flagging.strategy`` or the one shipped with dsa110d."""
    if config.flagging.strategy:
        return Path(config.flagging.strategy)
    return Path(str(resources.files(STRATEGY_PACKAGE) / STRATEGY_NAME))


def run_aoflagger(ms_paths: Sequence[Path], strategy: Path, threads: int, timeout: float) -> None:
    """AOFlagger on ``ms_paths`` (cross-correlations, column DATA), in place."""
    program = shutil.which(AOFLAGGER)
    if program is None:
        raise StageError("aoflagger is not installed (Debian package aoflagger)")
    command = [program, "-j", str(threads), "-strategy", str(strategy), "-column", "DATA",
               *map(str, ms_paths)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise StageError(f"aoflagger took longer than {timeout:g} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise StageError(f"aoflagger failed ({done.returncode}): {' | '.join(tail)}")


# --- antenna health -------------------------------------------------------------------------
@dataclass(frozen=True)
class Health:
    """The antennas judged bad from the block's autocorrelations, by kind (0-based numbers)."""

    dead: tuple[int, ...] = ()
    hot: tuple[int, ...] = ()
    unstable: tuple[int, ...] = ()
    power_ratio: dict[int, float] = field(default_factory=dict)
    """Each antenna's median autocorrelation power / the array's median."""

    @property
    def bad(self) -> tuple[int, ...]:
        return tuple(sorted({*self.dead, *self.hot, *self.unstable}))


def _auto_power(path: Path) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """(Nt, Nant, Npol) median over channels of each autocorrelation (NaN: absent or zero),
    and the antennas, ascending."""
    with tables.table(str(path), ack=False) as ms:
        autos = ms.query("ANTENNA1 == ANTENNA2", columns="TIME,ANTENNA1,DATA")
        with autos:
            if autos.nrows() == 0:
                return np.zeros((0, 0, 0)), np.zeros(0, dtype=np.int64)
            times, ants = autos.getcol("TIME"), autos.getcol("ANTENNA1")
            power = np.abs(autos.getcol("DATA")).astype(np.float64)
    power[power == 0] = np.nan
    with _quiet():
        per_row = np.nanmedian(power, axis=1)  # (rows, Npol)
    t_values, t_index = np.unique(times, return_inverse=True)
    antennas, a_index = np.unique(ants, return_inverse=True)
    cube = np.full((len(t_values), len(antennas), per_row.shape[1]), np.nan)
    cube[t_index, a_index] = per_row
    return cube, antennas.astype(np.int64)


def antenna_health(ms_paths: Sequence[Path], config: Config) -> Health:
    """Dead, hot and unstable antennas from the autocorrelations of the block's MSs."""
    cubes, antennas = [], None
    for path in ms_paths:
        cube, ants = _auto_power(path)
        if cube.size == 0:
            continue
        if antennas is not None and not np.array_equal(ants, antennas):
            log.warning("%s: other antennas than the block's first MS; health from the first", path)
            continue
        antennas = ants
        cubes.append(cube)
    if antennas is None:
        return Health()
    power = np.concatenate(cubes)  # (Nt, Nant, Npol)
    cfg = config.flagging
    with _quiet():
        level = np.nanmedian(power, axis=0)  # (Nant, Npol)
        ratio = level / np.nanmedian(level, axis=0)
        dead = np.any(ratio < cfg.dead_power_fraction, axis=1) | np.all(np.isnan(ratio), axis=1)
        hot = np.any(ratio > cfg.hot_power_factor, axis=1) & ~dead
        unstable = _unstable(power, cfg.unstable_rms) & ~dead & ~hot
    names = [int(a) for a in antennas]
    return Health(
        dead=tuple(a for a, d in zip(names, dead, strict=True) if d),
        hot=tuple(a for a, h in zip(names, hot, strict=True) if h),
        unstable=tuple(a for a, u in zip(names, unstable, strict=True) if u),
        power_ratio={a: float(np.nanmax(r)) for a, r in zip(names, ratio, strict=True)},
    )


def _unstable(power: NDArray[np.float64], limit: float) -> NDArray[np.bool_]:
    """Antennas whose power relative to the array's median at each integration scatters about
    a quadratic in time by more than ``limit`` (rms / median) and by more than
    UNSTABLE_VS_ARRAY times the array's median scatter, in either polarisation. The second
    bound keeps autocorrelations that all scatter (thermal noise at a short integration, a
    correlator glitch) from condemning the whole array."""
    n_t, n_ant, _ = power.shape
    if n_t < MIN_SAMPLES_FOR_TREND:
        return np.zeros(n_ant, dtype=bool)
    with _quiet():
        relative = power / np.nanmedian(power, axis=1, keepdims=True)
        relative /= np.nanmedian(relative, axis=0, keepdims=True)
    t = np.linspace(-1.0, 1.0, n_t)
    scatter = np.zeros(n_ant)
    for a in range(n_ant):
        for series in relative[:, a].T:
            good = np.isfinite(series)
            if good.sum() < MIN_SAMPLES_FOR_TREND:
                continue
            fit = np.polyval(np.polyfit(t[good], series[good], 2), t[good])
            rms = float(np.sqrt(np.mean((series[good] - fit) ** 2)))
            scatter[a] = max(scatter[a], rms)
    return np.asarray(scatter > max(limit, UNSTABLE_VS_ARRAY * float(np.median(scatter))))


# --- broadband bursts, before AOFlagger --------------------------------------------------------
def flag_bursts(path: Path, ratio: float) -> int:
    """Flag (every baseline and channel of) the integrations swamped by a broadband burst;
    the number flagged.

    Each integration's level is the median over cross-correlations of each one's
    BURST_PERCENTILE-th percentile amplitude over channels (a burst covering more than
    100 - BURST_PERCENTILE % of the band raises it, narrow lines do not). An integration whose
    level exceeds ``ratio`` times the lower of its neighbours' is swamped: the sky drifting
    through the beam changes the level by far less from one integration to the next. Needed
    beside AOFlagger: two strong bursts in a chunk of a few integrations set the noise level
    of its statistics, and it then misses them (measured: a third of their samples found)."""
    with tables.table(str(path), readonly=False, ack=False) as ms:
        if flagging.FLAGGED_KEYWORD in ms.keywordnames():
            return 0
        times = ms.getcol("TIME")
        cross = ms.getcol("ANTENNA1") != ms.getcol("ANTENNA2")
        _, t_index = np.unique(times, return_inverse=True)
        n_t = int(t_index.max()) + 1
        if n_t < 2:
            return 0
        level = np.full(ms.nrows(), np.nan)
        for r0 in range(0, ms.nrows(), ROW_SLAB):
            n = min(ROW_SLAB, ms.nrows() - r0)
            amplitude = np.abs(ms.getcol("DATA", r0, n)).reshape(n, -1)
            level[r0 : r0 + n] = np.percentile(amplitude, BURST_PERCENTILE, axis=1)
        per_time = np.array([np.median(level[cross & (t_index == t)]) for t in range(n_t)])
        neighbours = np.minimum(np.r_[np.inf, per_time[:-1]], np.r_[per_time[1:], np.inf])
        swamped = per_time > ratio * neighbours
        if not swamped.any():
            return 0
        for r0 in range(0, ms.nrows(), ROW_SLAB):
            n = min(ROW_SLAB, ms.nrows() - r0)
            hit = swamped[t_index[r0 : r0 + n]]
            if hit.any():
                flags = ms.getcol("FLAG", r0, n)
                flags[hit] = True
                ms.putcol("FLAG", flags, r0, n)
    return int(swamped.sum())


# --- interference in the autocorrelations ----------------------------------------------------
def auto_rfi(path: Path, n_sigma: float, window_mhz: float) -> NDArray[np.bool_]:
    """(Nt, Nchan): the integrations and channels where the autocorrelations show narrowband
    excess power, to be flagged on every baseline.

    A terrestrial emitter reaches every antenna, so it adds power to every autocorrelation,
    where the thermal noise is ~1e-4 of the power (SEFD / sqrt(bandwidth x time)): a median
    over antennas and polarisations sees it at a fraction of the cross-correlations' sigma.
    The sky's continuum adds power smooth in frequency; an excess over the running median of
    ``window_mhz`` (an odd number of channels, at least MIN_WINDOW_CHANNELS) by more than
    ``n_sigma`` robust sigmas (of all the MS's excesses) is interference.
    """
    with tables.table(str(path), ack=False) as ms:
        autos = ms.query("ANTENNA1 == ANTENNA2", columns="TIME,ANTENNA1,DATA")
        with autos:
            if autos.nrows() == 0:
                return np.zeros((0, 0), dtype=bool)
            times, ants = autos.getcol("TIME"), autos.getcol("ANTENNA1")
            power = np.abs(autos.getcol("DATA")).astype(np.float64)  # (rows, Nchan, Npol)
    _, t_index = np.unique(times, return_inverse=True)
    _, a_index = np.unique(ants, return_inverse=True)
    power[power == 0] = np.nan
    with _quiet():
        n_t, n_chan = int(t_index.max()) + 1, power.shape[1]
        cube = np.full((n_t, int(a_index.max()) + 1, n_chan, power.shape[2]), np.nan)
        cube[t_index, a_index] = power
        cube /= np.nanmedian(cube, axis=(0, 2), keepdims=True)  # each antenna's typical power
        spectrum = np.nanmedian(cube, axis=(1, 3))  # (Nt, Nchan)
        excess = spectrum - _running_median(spectrum, _window_channels(path, window_mhz))
        sigma = MAD_TO_SIGMA * np.nanmedian(np.abs(excess - np.nanmedian(excess)))
    if not np.isfinite(sigma) or sigma == 0:
        return np.zeros((n_t, n_chan), dtype=bool)
    return np.asarray(excess > n_sigma * sigma)


def _window_channels(path: Path, window_mhz: float) -> int:
    with tables.table(f"{path}::SPECTRAL_WINDOW", ack=False) as spw:
        width_mhz = float(np.median(np.abs(spw.getcol("CHAN_WIDTH")[0]))) / 1e6
    channels = max(MIN_WINDOW_CHANNELS, round(window_mhz / width_mhz))
    return channels + 1 - channels % 2


def _running_median(spectrum: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    """The median of each channel's ``window`` neighbours (edges padded by reflection)."""
    half = window // 2
    padded = np.pad(spectrum, ((0, 0), (half, half)), mode="reflect")
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=1)
    with _quiet():
        return np.asarray(np.nanmedian(views, axis=2))


# --- writing the flags and counting them ---------------------------------------------------
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
) -> dict[str, Any]:
    """Write the flags of step 3 into one MS (unless it was flagged before) and count the
    flags of its cross-correlations (step 4); JSON-able :class:`FlagCounts`."""
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
        if write and auto_sigma is not None:
            interference = auto_rfi(path, auto_sigma, auto_window_mhz)
        new = 0
        for r0 in range(0, ms.nrows(), ROW_SLAB):
            n = min(ROW_SLAB, ms.nrows() - r0)
            rows = slice(r0, r0 + n)
            flags = ms.getcol("FLAG", r0, n)
            if write:
                data = ms.getcol("DATA", r0, n)
                added = data == 0
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
                np.add.at(ant_flagged, a, per_row)
                np.add.at(ant_total, a, n_chan)
            np.add.at(time_flagged, ti, per_row)
            np.add.at(time_total, ti, n_chan)
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


def _fraction(flagged: float, total: float) -> float:
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
        "flag_fraction": _fraction(flagged, samples),
        "samples": int(samples),
        "bad_antennas": {
            "dead": [str(a + 1) for a in health.dead],
            "hot": [str(a + 1) for a in health.hot],
            "unstable": [str(a + 1) for a in health.unstable],
        },
        "antenna_power_ratio": {str(a + 1): r for a, r in health.power_ratio.items()},
        "antennas": {str(a + 1): _fraction(f, t) for a, (f, t) in sorted(antennas.items())},
        "channels": {
            "freq_mhz": counts[0]["freq_mhz"] if counts else [],
            "fraction": [_fraction(f, t) for f, t in channels],
        },
        "chunks": [
            {
                "ms": path.name,
                "time_mjd_s": one["time_mjd_s"],
                "fraction": [_fraction(f, t) for f, t in one["times"]],
            }
            for path, one in zip(ms_paths, counts, strict=True)
        ],
    }


def qa_path(config: Config, block_id: str) -> Path:
    return Path(config.paths.results_dir) / QA_DIR / f"{block_id}.flags.json"


def _summary(qa: dict[str, Any], flagger: str, config: Config) -> dict[str, SummaryValue]:
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
        "status": STATUS_MOSTLY_FLAGGED if mostly else "ok",
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


def _aoflag(ms_paths: Sequence[Path], config: Config) -> str:
    """Step 1 on the MSs not flagged before; the flagger that ran."""
    todo = []
    for path in ms_paths:
        try:
            with tables.table(str(path), ack=False) as ms:
                if flagging.FLAGGED_KEYWORD not in ms.keywordnames():
                    todo.append(path)
        except RuntimeError as exc:
            raise InputFileError(f"{path}: cannot open Measurement Set: {exc}") from None
    if shutil.which(AOFLAGGER) is None:
        log.warning("aoflagger is not installed: flagging with the MAD flagger (flag-mad)")
        for path in todo:  # outliers only: the keyword is written by flag_and_count
            flagging.flag_ms(path)
            with tables.table(str(path), readonly=False, ack=False) as ms:
                ms.removekeyword(flagging.FLAGGED_KEYWORD)
        return "mad"
    for path in todo:
        if n := flag_bursts(path, config.flagging.burst_ratio):
            log.info("%s: %d integrations swamped by broadband bursts", path, n)
    if todo:
        threads = config.supervisor.workers or len(os.sched_getaffinity(0))
        run_aoflagger(todo, strategy_path(config), threads, config.flagging.aoflagger_timeout_sec)
    return FLAGGED_BY


def flag_stage(
    job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
) -> StageResult:
    """AOFlagger, antenna health, static channels, zeros and autocorrelations; flag QA."""
    paths = [Path(p) for p in ms_paths]
    flagger = _aoflag(paths, config)
    health = antenna_health(paths, config)
    if health.bad:
        log.info("block %s: bad antennas %s", job.block_id, [a + 1 for a in health.bad])

    def one(path: Path) -> dict[str, Any]:
        try:
            return flag_and_count(
                path,
                health.bad,
                config.flagging.static_channel_ranges_mhz,
                config.flagging.auto_rfi_sigma,
                config.flagging.auto_rfi_window_mhz,
            )
        except DSA110Error:
            raise
        except Exception as exc:
            raise StageError(f"{path}: flagging failed: {describe(exc)}") from exc

    processes = flagging.flag_processes(config, len(paths))
    if processes > 1:
        counts = run_forked_each(paths, one, processes=processes, failure=StageError)
    else:
        counts = [one(path) for path in paths]
    qa = block_qa(job, paths, counts, health)
    final = qa_path(config, job.block_id)
    with atomic_file(final) as temp:
        temp.write_text(json.dumps(qa) + "\n")
    summary = _summary(qa, flagger, config)
    log.info(
        "block %s: %.1f%% flagged (%s), bad antennas %s",
        job.block_id, 100 * qa["flag_fraction"], flagger, summary["bad_antennas"] or "none",
    )  # fmt: skip
    return StageResult("flag", "ok", outputs={"flag_qa": str(final)}, summary=summary)
