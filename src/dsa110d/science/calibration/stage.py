"""The ``calibrate`` stage: bandpass from the calibrator's transit, gains per chunk, applied.

For each block (after ``flag``, before ``photometry``):

1. **Sky model** per MS (:mod:`dsa110d.science.calibration.model`): the in-beam catalog
   sources through the primary beam, calibrators with their flux models.
2. **Bandpass and delay**: when a catalog calibrator (column ``calibrator``) transits in one of
   the block's MSs (beam gain >= ``calibration.calibrator_min_beam_gain``), one complex gain
   per antenna, channel and polarisation is solved on that MS (StEFCal, every channel at once,
   :mod:`dsa110d.science.calibration.solver`), referenced to the reference antenna, and
   published as ``cal/bandpass/bandpass-<set>.tab`` + ``.json``. It carries the delays too (the
   phase slope across the band, in the record's ``extra.delay_ns``). A bandpass is valid
   ``calibration.bandpass_valid_days`` either side of its transit; each MS gets the newest
   valid one (:func:`caltables.newest_valid`), from this block or from an earlier one on disk.
3. **Gains**: with the bandpass divided out, one complex gain per antenna, polarisation and
   ``calibration.solution_interval_sec`` against the sky model; published per block as
   ``cal/gains/gains-<block>-v<version>.tab`` + ``.json``.
4. **Apply**: ``CORRECTED_DATA = DATA / (G_i conj(G_j))`` with ``G = bandpass x gain``; data of
   antennas whose solution is flagged (SNR < ``calibration.min_snr``, or no data) are flagged.
   The MS's table keyword ``DSA110_CAL`` records what was applied and whether it is valid: the
   photometry reads CORRECTED_DATA only from an MS whose keyword says ``ok``, and with
   calibration enabled refuses the others (flag ``uncalibrated``).

Reference antenna: ``calibration.reference_antenna`` (an ANTENNA-table index), or, when it is
flagged or absent, the unflagged antenna with the most data in that solution.
QA per solution (the JSON record): median SNR, flagged antennas, amplitude scatter between
antennas, phase scatter (bandpass: about the delay fit; gains: over the block's intervals),
and antennas whose mean amplitude moved by more than ``OUTLIER_AMPLITUDE_FRACTION`` (or phase
by ``OUTLIER_PHASE_DEG`` for a bandpass) from the previous solution of the same kind.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from casacore import tables
from numpy.typing import NDArray

from dsa110d.config import CalibrationConfig, Config
from dsa110d.errors import InputFileError
from dsa110d.science.atomic import is_complete_dir
from dsa110d.science.calibration import caltables
from dsa110d.science.calibration.caltables import Solution, SolutionRecord
from dsa110d.science.calibration.model import (
    SkyModel,
    calibrator_peak_gain,
    model_visibilities,
    sky_model,
)
from dsa110d.science.calibration.solver import (
    SumsAccumulator,
    add_samples,
    choose_reference,
    referenced,
    stefcal,
)
from dsa110d.science.catalog import Catalog, read_catalog
from dsa110d.science.constants import SECONDS_PER_DAY
from dsa110d.science.photometry.geometry import read_geometry
from dsa110d.science.pipeline.calstatus import CORRECTED, STATUS_OK, mark
from dsa110d.science.pipeline.stage import BlockJob, StageResult

log = logging.getLogger(__name__)

ROWS_PER_READ = 4096
"""Main-table rows read at once (~50 MB of DATA at 768 channels x 2 polarisations)."""
OUTLIER_AMPLITUDE_FRACTION = 0.2
"""An antenna whose mean gain amplitude changed by more than this from the previous solution
of its kind is an outlier."""
OUTLIER_PHASE_DEG = 30.0
"""...or, for a bandpass (constant in time), whose mean phase moved by more than this."""


@dataclass
class _Ms:
    path: Path
    set_id: str
    model: SkyModel
    antennas: NDArray[np.int64]
    times: NDArray[np.float64]
    calibrator: int | None
    calibrator_gain: float

    @property
    def mid_mjd(self) -> float:
        return float(self.times.mean()) / SECONDS_PER_DAY


def _open(path: Path, readonly: bool = True) -> Any:
    try:
        return tables.table(str(path), readonly=readonly, ack=False)
    except RuntimeError as exc:
        raise InputFileError(f"{path}: cannot open Measurement Set: {exc}") from None


def _inspect(path: Path, catalog: Catalog) -> _Ms:
    with _open(path) as ms:
        geometry = read_geometry(ms, path)
        antennas = np.unique(np.r_[ms.getcol("ANTENNA1"), ms.getcol("ANTENNA2")]).astype(np.int64)
    model = sky_model(geometry, catalog)
    cal, gain = calibrator_peak_gain(model, catalog)
    return _Ms(path, path.stem, model, antennas, geometry.times, cal, gain)


def _slabs(ms: Any) -> list[tuple[int, int]]:
    """(start, rows) of the slabs to read: whole integrations (each baseline once, the
    accumulator's fast path) of about ROWS_PER_READ rows."""
    times = ms.getcol("TIME")
    edges = np.flatnonzero(np.diff(times) != 0) + 1
    starts = np.r_[0, edges]
    per = max(1, int(ROWS_PER_READ // max(1, int(np.diff(np.r_[starts, times.size]).max()))))
    bounds = [*starts[::per].tolist(), int(times.size)]
    return [(a, b - a) for a, b in itertools.pairwise(bounds)]


def _rows(ms: Any, start: int, n: int, model: SkyModel) -> tuple[NDArray[Any], ...]:
    a1, a2 = ms.getcol("ANTENNA1", start, n), ms.getcol("ANTENNA2", start, n)
    t_index = np.searchsorted(model.times, ms.getcol("TIME", start, n))
    data = ms.getcol("DATA", start, n)
    flag = ms.getcol("FLAG", start, n)
    m = model_visibilities(model, ms.getcol("UVW", start, n), t_index)
    return a1, a2, t_index, data, flag, m


def _finish(
    kind: caltables.Kind,
    sol_gain: NDArray[np.complex128],
    sol_error: NDArray[np.float64],
    sol_snr: NDArray[np.float64],
    unusable: NDArray[np.bool_],
    weight: NDArray[np.float64],
    shape: tuple[int, int, int, int],
    info: _Ms,
    times: NDArray[np.float64],
    interval: NDArray[np.float64],
    freq: NDArray[np.float64],
    config: CalibrationConfig,
) -> Solution:
    """Reshape solver output (Nt*Nchan*Npol, Nant) to (Nt, Nant, Nchan, Npol), flag, reference."""
    n_t, n_ant, n_chan, n_pol = shape

    def cube(x: NDArray[Any]) -> NDArray[Any]:
        return np.asarray(x.reshape(n_t, n_chan, n_pol, n_ant).transpose(0, 3, 1, 2))

    gain, error, snr = cube(sol_gain), cube(sol_error), cube(sol_snr)
    flag = cube(unusable) | (snr < config.min_snr)
    antenna_flagged = np.asarray(flag.all(axis=(0, 2, 3)), dtype=bool)
    ref = choose_reference(
        antenna_flagged, config.reference_antenna, info.antennas, cube(weight).sum(axis=(0, 2, 3))
    )
    gain = np.moveaxis(referenced(np.moveaxis(gain, 1, -1), ref), -1, 1)
    gain = np.where(flag, 1.0 + 0j, gain)
    return Solution(
        kind, times, interval, info.antennas, freq, gain, error, snr, flag, int(info.antennas[ref])
    )


def solve_bandpass(info: _Ms, config: CalibrationConfig) -> Solution:
    """One gain per antenna, channel and polarisation over the whole MS (the calibrator's
    transit), against the sky model."""
    n_ant = info.antennas.size
    acc: SumsAccumulator | None = None
    with _open(info.path) as ms:
        for start, n in _slabs(ms):
            a1, a2, _, data, flag, m = _rows(ms, start, n, info.model)
            n_pol = data.shape[2]
            rows = len(a1)
            model = np.repeat(m[:, :, None], n_pol, axis=2).reshape(rows, -1)
            if acc is None:
                acc = SumsAccumulator(1, n_ant, model.shape[1])
            add_samples(
                acc,
                data.reshape(rows, -1),
                model,
                (~flag).reshape(rows, -1).astype(np.float64),
                np.searchsorted(info.antennas, a1),
                np.searchsorted(info.antennas, a2),
                np.zeros(rows, np.intp),
            )
    if acc is None:
        raise InputFileError(f"{info.path}: no rows to solve a bandpass on")
    sums = acc.result()
    solved = stefcal(sums)
    freq = info.model.freq_hz
    times = np.array([float(info.times.mean())])
    interval = np.array([float(np.ptp(info.times))])
    weight = sums.b.sum(axis=2)
    return _finish(
        "bandpass",
        solved.gain,
        solved.error,
        solved.snr,
        solved.flagged,
        weight,
        (1, n_ant, freq.size, sums.a.shape[0] // freq.size),
        info,
        times,
        interval,
        freq,
        config,
    )


def _lookup(solution: Solution, antennas: NDArray[np.int64]) -> tuple[NDArray[Any], NDArray[Any]]:
    """``solution``'s gains and flags for ``antennas`` (absent antennas flagged):
    (Nt, len(antennas), Nchan, Npol)."""
    where = np.searchsorted(solution.antennas, antennas)
    where = np.clip(where, 0, solution.antennas.size - 1)
    present = solution.antennas[where] == antennas
    gain = np.where(present[None, :, None, None], solution.gain[:, where], 1.0 + 0j)
    flag = np.where(present[None, :, None, None], solution.flag[:, where], True)
    return gain, flag


def _intervals(times: NDArray[np.float64], config: CalibrationConfig) -> NDArray[np.intp]:
    return np.asarray(np.floor((times - times[0]) / config.solution_interval_sec).astype(np.intp))


def solve_gains(info: _Ms, bandpass: Solution, config: CalibrationConfig) -> Solution:
    """One gain per antenna, polarisation and solution interval, the bandpass divided out."""
    bp, bp_flag = _lookup(bandpass, info.antennas)
    bp, bp_flag = bp[0], bp_flag[0]  # (Nant, Nchan, Npol)
    interval_of = _intervals(info.times, config)
    n_int = int(interval_of.max()) + 1
    n_ant = info.antennas.size
    acc: SumsAccumulator | None = None
    with _open(info.path) as ms:
        for start, n in _slabs(ms):
            a1, a2, t_index, data, flag, m = _rows(ms, start, n, info.model)
            i1, i2 = np.searchsorted(info.antennas, a1), np.searchsorted(info.antennas, a2)
            divisor = bp[i1] * np.conj(bp[i2])
            good = ~(flag | bp_flag[i1] | bp_flag[i2]) & (a1 != a2)[:, None, None]
            w = good.astype(np.float64)
            r = np.where(good, data / np.where(good, divisor, 1.0), 0.0)
            mm = m[:, :, None]
            if acc is None:
                acc = SumsAccumulator(n_int, n_ant, data.shape[2])
            acc.add(
                (w * r * np.conj(mm)).sum(axis=1),
                (w * np.abs(mm) ** 2).sum(axis=1),
                (w * np.abs(r) ** 2).sum(axis=1),
                w.sum(axis=1),
                i1,
                i2,
                interval_of[t_index],
            )
    if acc is None:
        raise InputFileError(f"{info.path}: no rows to solve gains on")
    sums = acc.result()
    solved = stefcal(sums)
    n_pol = sums.a.shape[0] // n_int
    times = np.array([float(info.times[interval_of == k].mean()) for k in range(n_int)])
    spans = np.array([float(np.ptp(info.times[interval_of == k])) for k in range(n_int)])
    weight = sums.b.sum(axis=2)
    return _finish(
        "gains",
        solved.gain,
        solved.error,
        solved.snr,
        solved.flagged,
        weight,
        (n_int, n_ant, 1, n_pol),
        info,
        times,
        spans,
        info.model.freq_hz,
        config,
    )


def apply(info: _Ms, bandpass: Solution, gains: Solution, config: CalibrationConfig) -> None:
    """Write ``CORRECTED_DATA = DATA / (G_i conj(G_j))`` (adding the column when missing) and
    flag the data of antennas whose solution is flagged."""
    bp, bp_flag = _lookup(bandpass, info.antennas)
    g, g_flag = _lookup(gains, info.antennas)
    interval_of = _intervals(info.times, config)
    with _open(info.path, readonly=False) as ms:
        if CORRECTED not in ms.colnames():
            desc = ms.getcoldesc("DATA")
            desc["comment"] = "DATA divided by the antenna gains (dsa110d calibrate)"
            dminfo = ms.getdminfo("DATA")
            dminfo["NAME"] = "TiledCORRECTED_DATA"
            ms.addcols(tables.maketabdesc([tables.makecoldesc(CORRECTED, desc)]), dminfo)
        for start in range(0, ms.nrows(), ROWS_PER_READ):
            n = min(ROWS_PER_READ, ms.nrows() - start)
            a1, a2 = ms.getcol("ANTENNA1", start, n), ms.getcol("ANTENNA2", start, n)
            i1, i2 = np.searchsorted(info.antennas, a1), np.searchsorted(info.antennas, a2)
            k = interval_of[np.searchsorted(info.times, ms.getcol("TIME", start, n))]
            total_1 = bp[0, i1] * g[k, i1]  # (rows, Nchan, Npol) * (rows, 1, Npol)
            total_2 = bp[0, i2] * g[k, i2]
            bad = bp_flag[0, i1] | bp_flag[0, i2] | g_flag[k, i1] | g_flag[k, i2]
            data = ms.getcol("DATA", start, n)
            flag = ms.getcol("FLAG", start, n) | bad
            divisor = np.where(bad, 1.0, total_1 * np.conj(total_2))
            corrected = np.where(flag, 0.0, data / divisor).astype(np.complex64)
            ms.putcol(CORRECTED, corrected, start, n)
            ms.putcol("FLAG", flag, start, n)


# --- QA ---------------------------------------------------------------------------------------


def _mean_over_unflagged(x: NDArray[Any], flag: NDArray[np.bool_]) -> NDArray[Any]:
    """Mean over time, channel and polarisation per antenna, ignoring flagged cells."""
    weight = (~flag).astype(np.float64)
    total = (np.where(flag, 0, x) * weight).sum(axis=(0, 2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(total / weight.sum(axis=(0, 2, 3)))


def delays_ns(solution: Solution) -> NDArray[np.float64]:
    """Per antenna and polarisation, the delay of a bandpass relative to the reference antenna,
    ns: the phase slope across the band over 2 pi (CASA's K Jones sign: phase = 2 pi tau nu);
    (Nant, Npol), NaN when too few channels are unflagged."""
    _, n_ant, _, n_pol = solution.gain.shape
    out = np.full((n_ant, n_pol), np.nan)
    f = solution.freq_hz - solution.freq_hz.mean()
    for p in range(n_pol):  # two polarisations: a loop of two over vectorised fits
        good = ~solution.flag[0, :, :, p]
        phase = np.unwrap(np.angle(solution.gain[0, :, :, p]), axis=1)
        w = good.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            fw = (w * f).sum(axis=1) / w.sum(axis=1)
            pw = (w * phase).sum(axis=1) / w.sum(axis=1)
            slope = (w * (f - fw[:, None]) * (phase - pw[:, None])).sum(axis=1) / (
                w * (f - fw[:, None]) ** 2
            ).sum(axis=1)
        enough = good.sum(axis=1) >= 3
        out[enough, p] = slope[enough] / (2 * math.pi) * 1e9
    return out


def quality(solution: Solution, previous: Solution | None) -> dict[str, Any]:
    """The QA numbers of a solution (see the module docstring)."""
    flag = solution.flag
    antenna_flagged = flag.all(axis=(0, 2, 3))
    amplitude = _mean_over_unflagged(np.abs(solution.gain), flag)
    usable = ~antenna_flagged & np.isfinite(amplitude)
    snr = solution.snr[~flag]
    amp_scatter = (
        float(np.std(amplitude[usable]) / np.mean(amplitude[usable])) if usable.any() else math.nan
    )
    if solution.kind == "bandpass":
        f = solution.freq_hz - solution.freq_hz.mean()
        tau = np.nan_to_num(delays_ns(solution))
        flat = solution.gain[0] * np.exp(-2j * np.pi * f[None, :, None] * tau[:, None, :] * 1e-9)
        mean = np.where(flag[0], 0, flat).sum(axis=1, keepdims=True)
        residual = np.angle(flat * np.conj(mean))
    else:
        mean = np.where(flag, 0, solution.gain).sum(axis=0, keepdims=True)
        residual = np.angle(solution.gain * np.conj(mean))
    spread = np.degrees(
        np.sqrt(np.mean(np.where(flag if solution.kind == "gains" else flag[0], 0, residual) ** 2))
    )
    outliers: list[int] = []
    if previous is not None:
        before = dict(
            zip(
                previous.antennas.tolist(),
                _mean_over_unflagged(np.abs(previous.gain), previous.flag).tolist(),
                strict=True,
            )
        )
        phase_now = np.angle(np.where(flag, 0, solution.gain).sum(axis=(0, 2, 3)))
        phase_before = dict(
            zip(
                previous.antennas.tolist(),
                np.angle(np.where(previous.flag, 0, previous.gain).sum(axis=(0, 2, 3))).tolist(),
                strict=True,
            )
        )
        for i, ant in enumerate(solution.antennas.tolist()):
            if (
                not usable[i]
                or ant not in before
                or not math.isfinite(before[ant])
                or before[ant] <= 0
            ):
                continue
            moved = abs(amplitude[i] / before[ant] - 1.0) > OUTLIER_AMPLITUDE_FRACTION
            turned = (
                abs(math.degrees(math.remainder(phase_now[i] - phase_before[ant], 2 * math.pi)))
                > OUTLIER_PHASE_DEG
            )
            if moved or (solution.kind == "bandpass" and turned):
                outliers.append(int(ant))
    return {
        "flagged_antennas": [int(a) for a in solution.antennas[antenna_flagged]],
        "snr_median": float(np.median(snr)) if snr.size else 0.0,
        "amp_scatter": amp_scatter,
        "phase_scatter_deg": float(spread),
        "outlier_antennas": outliers,
    }


def _record(
    solution: Solution,
    solution_id: str,
    job: BlockJob,
    set_ids: list[str],
    valid: tuple[float, float],
    calibrator: str | None,
    config: CalibrationConfig,
    previous: Solution | None,
    extra: dict[str, Any],
) -> SolutionRecord:
    qa = quality(solution, previous)
    n_ant = int(solution.antennas.size)
    poor = (
        qa["snr_median"] < config.min_snr
        or len(qa["flagged_antennas"]) > config.max_flagged_fraction * n_ant
    )
    return SolutionRecord(
        solution_id=solution_id,
        kind=solution.kind,
        block_id=job.block_id,
        block_version=job.version,
        set_ids=set_ids,
        valid_from_mjd=valid[0],
        valid_to_mjd=valid[1],
        calibrator=calibrator,
        reference_antenna=solution.reference_antenna,
        n_antennas=n_ant,
        table=f"{solution_id}.tab",
        created_at=caltables.now_iso(),
        status="poor" if poor else "ok",
        extra=extra,
        **qa,
    )


def _previous(
    results: Path, kind: caltables.Kind, before_mjd: float, exclude: str
) -> Solution | None:
    candidates = [
        r
        for r in caltables.read_records(results, kind)
        if r.solution_id != exclude
        and float(r.extra.get("solved_mjd", r.valid_from_mjd)) < before_mjd
    ]
    if not candidates:
        return None
    newest = max(candidates, key=lambda r: float(r.extra.get("solved_mjd", r.valid_from_mjd)))
    return caltables.read_solution(caltables.table_path(results, newest))


def _bandpass_from_transit(
    infos: list[_Ms], catalog: Catalog, job: BlockJob, config: Config
) -> str | None:
    """Solve and publish the bandpass of a calibrator transit in the block, if there is one;
    returns the JSON path (or None)."""
    cfg = config.calibration
    transits = [
        i
        for i in infos
        if i.calibrator is not None and i.calibrator_gain >= cfg.calibrator_min_beam_gain
    ]
    if not transits:
        return None
    best = max(transits, key=lambda i: i.calibrator_gain)
    results = config.paths.results_dir
    solution_id = f"bandpass-{best.set_id}"
    directory = caltables.cal_dir(results, "bandpass")
    json_path = directory / f"{solution_id}.json"
    table = caltables.cal_dir(caltables.published_root(results), "bandpass") / f"{solution_id}.tab"
    if json_path.exists() and is_complete_dir(table):
        return str(json_path)  # solved by an earlier run of this block (in this directory)
    solution = solve_bandpass(best, cfg)
    solved = best.mid_mjd
    previous = _previous(results, "bandpass", solved, solution_id)
    assert best.calibrator is not None
    tau = delays_ns(solution)
    record = _record(
        solution,
        solution_id,
        job,
        [best.set_id],
        (solved - cfg.bandpass_valid_days, solved + cfg.bandpass_valid_days),
        catalog.ids[best.calibrator],
        cfg,
        previous,
        {
            "solved_mjd": solved,
            "delay_ns": [[v if math.isfinite(v) else None for v in row] for row in tau.tolist()],
            "calibrator_beam_gain": best.calibrator_gain,
        },
    )
    written = caltables.write_solution(results, record, solution, best.path)
    log.info(
        "bandpass %s from %s: %s, median SNR %.0f",
        solution_id,
        record.calibrator,
        record.status,
        record.snr_median,
    )
    return str(written)


def calibrate_stage(
    job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
) -> StageResult:
    """Solve and apply the calibration of one block (see the module docstring)."""
    cfg = config.calibration
    empty = {"cal_status": "uncalibrated", "cal_bandpass_id": None, "cal_gains_id": None}
    if not cfg.enabled:
        return StageResult(
            "calibrate", "skipped", summary=empty, message="calibration.enabled is off"
        )
    if config.paths.catalog is None:
        return StageResult(
            "calibrate", "skipped", summary=empty, message="paths.catalog is not configured"
        )
    catalog = read_catalog(config.paths.catalog)
    infos = [_inspect(Path(p), catalog) for p in sorted(ms_paths)]
    for info in infos:
        mark(info.path, "uncalibrated")  # until a solution is applied
    outputs: dict[str, str] = {}
    transit = _bandpass_from_transit(infos, catalog, job, config)
    if transit is not None:
        outputs["cal_bandpass"] = transit
    results = config.paths.results_dir
    records = caltables.read_records(results, "bandpass")
    mid = float(np.mean([i.mid_mjd for i in infos]))
    chosen = caltables.newest_valid(records, mid)
    if chosen is None:
        return StageResult(
            "calibrate",
            "ok",
            outputs=outputs,
            summary={**empty, "cal_status": "no_bandpass"},
            message="no valid bandpass: the block stays uncalibrated",
        )
    bandpass = caltables.read_solution(caltables.table_path(results, chosen))
    per_ms = [solve_gains(info, bandpass, cfg) for info in infos]
    gains = _concatenate(per_ms)
    gains_id = f"gains-{job.block_id}-v{job.version}"
    first, last = float(infos[0].times.min()), float(infos[-1].times.max())
    previous = _previous(results, "gains", first / SECONDS_PER_DAY, gains_id)
    record = _record(
        gains,
        gains_id,
        job,
        [i.set_id for i in infos],
        (first / SECONDS_PER_DAY, last / SECONDS_PER_DAY),
        None,
        cfg,
        previous,
        {"solved_mjd": first / SECONDS_PER_DAY, "bandpass_id": chosen.solution_id},
    )
    outputs["cal_gains"] = str(caltables.write_solution(results, record, gains, infos[0].path))
    status = "uncalibrated"
    if record.status == "ok":
        for info, solution in zip(infos, per_ms, strict=True):
            apply(info, bandpass, solution, cfg)
            mark(info.path, STATUS_OK, chosen.solution_id, gains_id)
        status = "ok"
    return StageResult(
        "calibrate",
        "ok",
        outputs=outputs,
        summary={
            "cal_status": status,
            "cal_bandpass_id": chosen.solution_id,
            "cal_gains_id": gains_id,
        },
    )


def _concatenate(solutions: list[Solution]) -> Solution:
    """The per-MS gain solutions of a block as one (antennas: the union, absent ones flagged)."""
    antennas = np.unique(np.concatenate([s.antennas for s in solutions]))
    parts = [_lookup(s, antennas) for s in solutions]
    first = solutions[0]

    def stack(name: str, fill: float) -> NDArray[Any]:
        out = []
        for s in solutions:
            where = np.clip(np.searchsorted(s.antennas, antennas), 0, s.antennas.size - 1)
            present = (s.antennas[where] == antennas)[None, :, None, None]
            out.append(np.where(present, getattr(s, name)[:, where], fill))
        return np.concatenate(out)

    return Solution(
        "gains",
        np.concatenate([s.times_mjd_s for s in solutions]),
        np.concatenate([s.interval_s for s in solutions]),
        antennas,
        first.freq_hz,
        np.concatenate([p[0] for p in parts]),
        stack("error", np.inf),
        stack("snr", 0.0),
        np.concatenate([p[1] for p in parts]),
        first.reference_antenna,
    )
