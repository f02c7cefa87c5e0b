"""The QA and the JSON record of a calibration solution (see :mod:`.stage` for what they hold).

QA per solution: median SNR, flagged antennas, amplitude scatter between antennas, phase
scatter (bandpass: about the delay fit; gains: over the block's intervals), and antennas whose
mean amplitude moved by more than ``OUTLIER_AMPLITUDE_FRACTION`` (or phase by
``OUTLIER_PHASE_DEG`` for a bandpass) from the previous solution of the same kind.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dsa110d.config import CalibrationConfig
from dsa110d.science.calibration import caltables
from dsa110d.science.calibration.caltables import Solution, SolutionRecord
from dsa110d.science.pipeline.stage import BlockJob

OUTLIER_AMPLITUDE_FRACTION = 0.2
"""An antenna whose mean gain amplitude changed by more than this from the previous solution
of its kind is an outlier."""
OUTLIER_PHASE_DEG = 30.0
"""...or, for a bandpass (constant in time), whose mean phase moved by more than this."""


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


def record(
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


def previous(
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
