"""Calibration solutions on disk: CASA calibration tables plus a JSON record beside each.

A solution of kind ``bandpass`` (CASA "B Jones") or ``gains`` ("G Jones") is written
atomically as ``<results_dir>/cal/<kind>/<solution_id>.tab`` (for a block run, its staging
directory: the processor publishes both files, see :func:`outputs`), a CASA calibration
table written with python-casacore: the main table has TIME, FIELD_ID, SPECTRAL_WINDOW_ID, ANTENNA1,
ANTENNA2 (the reference antenna), INTERVAL, SCAN_NUMBER, OBSERVATION_ID, and per cell
(channels, polarisations) CPARAM, PARAMERR, FLAG, SNR, WEIGHT; the ANTENNA, FIELD,
SPECTRAL_WINDOW, OBSERVATION and HISTORY subtables come from the MS solved on) and
``<solution_id>.json`` (:class:`SolutionRecord`, the contract with the state layer's registry).
The table is written before its record, so a record always names a complete table.

Gains in the table follow CASA's convention for the MS the pipeline writes: a corrected
visibility is ``DATA_ij / (g_i conj(g_j))``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from casacore import tables
from numpy.typing import NDArray

from dsa110d.errors import InputFileError
from dsa110d.science.atomic import (
    STAGING_DIR,
    atomic_dir,
    atomic_file,
    fenced_name,
    is_complete_dir,
    unfenced,
)

Kind = Literal["bandpass", "gains"]
KINDS: tuple[Kind, ...] = ("bandpass", "gains")
VISCAL = {"bandpass": "B Jones", "gains": "G Jones"}
SUBTABLES = ("ANTENNA", "FIELD", "SPECTRAL_WINDOW", "OBSERVATION", "HISTORY")
CASA_VERSION = "6.6.0"
"""The CASA version the table's layout follows (a keyword CASA's readers look for)."""


@dataclass(frozen=True)
class Solution:
    """Solved gains: (Ntimes, Nant, Nchan, Npol) with their errors, SNR and flags."""

    kind: Kind
    times_mjd_s: NDArray[np.float64]
    interval_s: NDArray[np.float64]
    antennas: NDArray[np.int64]
    """Antenna indices in the MS's ANTENNA table, (Nant,)."""
    freq_hz: NDArray[np.float64]
    """(Nchan,): the channels (one, the band centre, for gains)."""
    gain: NDArray[np.complex128]
    error: NDArray[np.float64]
    snr: NDArray[np.float64]
    flag: NDArray[np.bool_]
    reference_antenna: int
    """The reference antenna's index in the MS's ANTENNA table."""


@dataclass(frozen=True)
class SolutionRecord:
    """The JSON record of one solution (the contract with the state layer, SCIENCE.md)."""

    solution_id: str
    kind: Kind
    block_id: str
    block_version: int
    set_ids: list[str]
    valid_from_mjd: float
    valid_to_mjd: float
    calibrator: str | None
    reference_antenna: int
    n_antennas: int
    flagged_antennas: list[int]
    snr_median: float
    amp_scatter: float
    phase_scatter_deg: float
    outlier_antennas: list[int]
    table: str
    created_at: str
    status: Literal["ok", "poor"]
    extra: dict[str, Any] = field(default_factory=dict)
    """Details beyond the contract (e.g. the antennas' delays), kept under ``extra``."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SolutionRecord:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def cal_dir(results_dir: Path, kind: Kind) -> Path:
    return results_dir / "cal" / kind


def published_root(results_dir: Path) -> Path:
    """Where earlier runs' solutions are: ``results_dir``, or, when it is a block run's staging
    directory (``<results>/.staging/<block>.v<version>.t<token>``, whose outputs the processor
    publishes under fenced names), the results directory above it."""
    if results_dir.parent.name == STAGING_DIR:
        return results_dir.parent.parent
    return results_dir


def outputs(kind: Kind, json_path: Path) -> dict[str, str]:
    """A stage's outputs for one written solution: its record (``cal_<kind>``) and its table
    (``cal_<kind>_table``), so the processor publishes both, fenced, with the run's commit
    (``state.calibration``'s contract)."""
    return {f"cal_{kind}": str(json_path), f"cal_{kind}_table": str(json_path.with_suffix(".tab"))}


def table_path(results_dir: Path, record: SolutionRecord) -> Path:
    """The table a record names: as :func:`read_records` resolved it (absolute), else beside
    the records of ``results_dir``."""
    if Path(record.table).is_absolute():
        return Path(record.table)
    return cal_dir(results_dir, record.kind) / record.table


def _table_beside(json_path: Path, table: str) -> Path:
    """The table a record file names, beside it: published with the record's version and
    token when the record's name carries them (the processor publishes both so), else as
    named (a table written outside a block run, or before tables were fenced)."""
    plain = json_path.parent / Path(table).name
    _, version, token = unfenced(json_path.name)
    fenced = fenced_name(plain, version, token) if token else plain
    return fenced if is_complete_dir(fenced) else plain


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_solution(
    results_dir: Path, record: SolutionRecord, solution: Solution, ms_path: Path
) -> Path:
    """Write the table (unless complete already: it is never rewritten in place), then the
    record, under ``results_dir``; returns the record's path."""
    table = cal_dir(results_dir, record.kind) / record.table
    if not is_complete_dir(table):
        with atomic_dir(table) as temp:
            _write_table(temp / "t", solution, ms_path)
            for entry in (temp / "t").iterdir():
                entry.rename(temp / entry.name)
            (temp / "t").rmdir()
    json_path = cal_dir(results_dir, record.kind) / f"{record.solution_id}.json"
    with atomic_file(json_path) as temp_json:
        temp_json.write_text(json.dumps(record.to_json(), indent=1) + "\n")
    return json_path


def _write_table(path: Path, solution: Solution, ms_path: Path) -> None:
    n_t, n_ant, n_chan, n_pol = solution.gain.shape
    cell = [n_chan, n_pol]
    columns = [
        tables.makescacoldesc("TIME", 0.0, comment="Midpoint of the solution interval, MJD s"),
        tables.makescacoldesc("FIELD_ID", 0),
        tables.makescacoldesc("SPECTRAL_WINDOW_ID", 0),
        tables.makescacoldesc("ANTENNA1", 0),
        tables.makescacoldesc("ANTENNA2", 0, comment="The reference antenna"),
        tables.makescacoldesc("INTERVAL", 0.0),
        tables.makescacoldesc("SCAN_NUMBER", 0),
        tables.makescacoldesc("OBSERVATION_ID", 0),
        tables.makearrcoldesc("CPARAM", 0j, shape=cell, valuetype="complex"),
        tables.makearrcoldesc("PARAMERR", 0.0, shape=cell, valuetype="float"),
        tables.makearrcoldesc("FLAG", False, shape=cell),
        tables.makearrcoldesc("SNR", 0.0, shape=cell, valuetype="float"),
        tables.makearrcoldesc("WEIGHT", 0.0, shape=cell, valuetype="float"),
    ]
    desc = tables.maketabdesc(columns)
    n_rows = n_t * n_ant
    with tables.table(str(path), desc, nrow=n_rows, ack=False) as t:
        t.putcol("TIME", np.repeat(solution.times_mjd_s, n_ant))
        t.putcol("INTERVAL", np.repeat(solution.interval_s, n_ant))
        t.putcol("ANTENNA1", np.tile(solution.antennas, n_t).astype(np.int32))
        t.putcol("ANTENNA2", np.full(n_rows, solution.reference_antenna, np.int32))
        for name in ("FIELD_ID", "SPECTRAL_WINDOW_ID", "OBSERVATION_ID"):
            t.putcol(name, np.zeros(n_rows, np.int32))
        t.putcol("SCAN_NUMBER", np.ones(n_rows, np.int32))
        t.putcol("CPARAM", solution.gain.reshape(n_rows, n_chan, n_pol).astype(np.complex64))
        error = np.where(np.isfinite(solution.error), solution.error, 0.0)
        t.putcol("PARAMERR", error.reshape(n_rows, n_chan, n_pol).astype(np.float32))
        t.putcol("FLAG", solution.flag.reshape(n_rows, n_chan, n_pol))
        t.putcol("SNR", solution.snr.reshape(n_rows, n_chan, n_pol).astype(np.float32))
        t.putcol("WEIGHT", (~solution.flag).reshape(n_rows, n_chan, n_pol).astype(np.float32))
        t.putkeyword("ParType", "Complex")
        t.putkeyword("MSName", ms_path.name)
        t.putkeyword("VisCal", VISCAL[solution.kind])
        t.putkeyword("PolBasis", "unknown")
        t.putkeyword("CASA_Version", CASA_VERSION)
        t.putinfo({"type": "Calibration", "subType": VISCAL[solution.kind], "readme": ""})
        for name in SUBTABLES:
            source = ms_path / name
            if not source.exists():
                continue
            with tables.table(str(source), ack=False) as sub:
                sub.copy(str(path / name), deep=True)
            t.putkeyword(name, f"Table: {path / name}")
    if solution.kind == "gains":  # one channel: the band the gain averages
        with tables.table(str(path / "SPECTRAL_WINDOW"), readonly=False, ack=False) as spw:
            width = float(np.ptp(solution.freq_hz)) if solution.freq_hz.size > 1 else 0.0
            spw.putcell("NUM_CHAN", 0, 1)
            for col, value in (
                ("CHAN_FREQ", float(np.mean(solution.freq_hz))),
                ("CHAN_WIDTH", width),
                ("EFFECTIVE_BW", width),
                ("RESOLUTION", width),
            ):
                spw.putcell(col, 0, np.array([value]))


def read_solution(path: Path) -> Solution:
    """A table written by :func:`write_solution` (or CASA's B/G Jones with one SPW)."""
    try:
        t = tables.table(str(path), ack=False)
    except RuntimeError as exc:
        raise InputFileError(f"{path}: cannot open calibration table: {exc}") from None
    with t:
        viscal = str(t.getkeyword("VisCal"))
        kind: Kind = "bandpass" if viscal.startswith("B") else "gains"
        times = t.getcol("TIME")
        ant = t.getcol("ANTENNA1")
        antennas = np.unique(ant)
        unique_times = np.unique(times)
        n_t, n_ant = unique_times.size, antennas.size
        gain = t.getcol("CPARAM")
        order = np.lexsort((ant, times))
        shape = (n_t, n_ant, *gain.shape[1:])
        with tables.table(f"{path}/SPECTRAL_WINDOW", ack=False) as spw:
            freq = np.asarray(spw.getcell("CHAN_FREQ", 0), dtype=np.float64)
        interval = t.getcol("INTERVAL")[order].reshape(n_t, n_ant)[:, 0]
        return Solution(
            kind=kind,
            times_mjd_s=unique_times,
            interval_s=interval,
            antennas=antennas.astype(np.int64),
            freq_hz=freq,
            gain=gain[order].reshape(shape).astype(np.complex128),
            error=t.getcol("PARAMERR")[order].reshape(shape).astype(np.float64),
            snr=t.getcol("SNR")[order].reshape(shape).astype(np.float64),
            flag=t.getcol("FLAG")[order].reshape(shape),
            reference_antenna=int(t.getcol("ANTENNA2")[0]),
        )


def read_records(results_dir: Path, kind: Kind) -> list[SolutionRecord]:
    """Every record of ``kind`` whose table is complete, oldest first (by valid_from): those
    of ``results_dir`` and of the published root (records published by the processor carry
    fenced names, ``<id>.v<version>.t<token>.json``, and so do their tables), each with its
    ``table`` resolved to the table's absolute path."""
    roots = dict.fromkeys([results_dir, published_root(results_dir)])
    records = []
    for root in roots:
        directory = cal_dir(root, kind)
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            try:
                record = SolutionRecord.from_json(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # a damaged record is not a solution
            table = _table_beside(path, record.table)
            if is_complete_dir(table):
                records.append(replace(record, table=str(table.absolute())))
    return sorted(records, key=lambda r: (r.valid_from_mjd, r.created_at))


def newest_valid(records: list[SolutionRecord], mjd: float) -> SolutionRecord | None:
    """The solution to apply at ``mjd``: of the ``ok`` records whose validity covers it, the
    newest solved at or before ``mjd`` (by ``valid_from``); failing that, the earliest after."""
    covering = [
        r for r in records if r.status == "ok" and r.valid_from_mjd <= mjd <= r.valid_to_mjd
    ]
    if not covering:
        return None
    solved_at = [r for r in covering if float(r.extra.get("solved_mjd", r.valid_from_mjd)) <= mjd]
    if solved_at:
        return max(solved_at, key=lambda r: (float(r.extra.get("solved_mjd", 0.0)), r.created_at))
    return min(covering, key=lambda r: float(r.extra.get("solved_mjd", math.inf)))
