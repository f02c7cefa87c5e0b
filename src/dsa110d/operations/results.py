"""The published results as the console shows them: light curves, the eta-V diagram, the
analysis runs and the files under ``paths.results_dir``.

These read the files the pipeline publishes (photometry Parquet per block, the variability
run's tables), never its working state, so they see exactly what an astronomer downloading the
files sees. The layout names are the science package's (``science.variability_run`` and
``variability_results``), spelt out here so that the console does not import the science stack
to start; a test pins them equal.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio

from dsa110d.config import Config
from dsa110d.errors import BadRequestError, NotFoundError, StateError
from dsa110d.operations.session import open_state
from dsa110d.state.analysis import AnalysisQueue
from dsa110d.state.connection import describe_target
from dsa110d.state.keys import Keys

PHOTOMETRY_SUBDIR = "photometry"
VARIABILITY_SUBDIR = "variability"
LATEST_TABLE = "latest.parquet"
RUN_CANDIDATES_SUFFIX = ".candidates.json"
ETA_V_COLUMNS = ("source_id", "class", "eta", "v", "n", "mean_flux_jy")
MAX_FILES = 2000
"""Files listed at most per directory (the newest first)."""
_TEMPORARY = re.compile(r"^\.|\.tmp-|\.partial$")
SOURCE_ID = re.compile(r"^[\w.+:-]{1,128}$")
"""What a source id may look like in a request (catalog ids: letters, digits, ``+-_.:``)."""


def check_source_id(source_id: str) -> str:
    if not SOURCE_ID.match(source_id):
        raise BadRequestError(f"{source_id[:64]!r} is not a source id")
    return source_id


def _data_files(directory: Path, pattern: str) -> list[Path]:
    """Published files only: a temporary name is a file still being written."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(pattern) if not _TEMPORARY.search(p.name))


def light_curve(config: Config, source_id: str) -> dict[str, Any]:
    """One source's light curve as columns: what ``dsa110ctl lightcurve`` reads
    (:func:`dsa110d.operations.analysis.light_curve`: the newest version of each block, time
    order), without the measurements that have no flux, plus the files that hold it."""
    from dsa110d.operations.analysis import light_curve as read_light_curve
    from dsa110d.operations.analysis import light_curve_records

    check_source_id(source_id)
    rows = [
        r
        for r in light_curve_records(read_light_curve(config, source_id))
        if _finite(r.get("flux_jy")) and _finite(r.get("mjd"))
    ]
    if not rows:
        raise NotFoundError(f"no photometry for source {source_id}")
    root = config.paths.results_dir
    blocks = {str(r.get("block_id", "")) for r in rows}
    holding = [
        p.relative_to(root).as_posix()
        for p in _data_files(root / PHOTOMETRY_SUBDIR, "*.parquet")
        if p.name.split(".", 1)[0] in blocks
    ]
    return {
        "source_id": source_id,
        "mjd": [float(r["mjd"]) for r in rows],
        "flux_jy": [float(r["flux_jy"]) for r in rows],
        "flux_err_jy": [_number(r.get("flux_err_jy")) for r in rows],
        "block_id": [str(r.get("block_id", "")) for r in rows],
        "flags": [_flag_text(r.get("flag_names")) for r in rows],
        "usable": [bool(r.get("usable", True)) for r in rows],
        "files": holding,
        "plots": [
            p.relative_to(root).as_posix()
            for p in _data_files(
                root / VARIABILITY_SUBDIR, f"*/lightcurves/{_plot_name(source_id)}"
            )
        ][::-1],
    }


def _flag_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _plot_name(source_id: str) -> str:
    """The light-curve plot's file name (``variability_results``: unsafe characters as _)."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", source_id) + ".png"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and value == value and abs(value) != float("inf")


def _number(value: Any) -> float | None:
    return float(value) if _finite(value) else None


def eta_v(config: Config) -> dict[str, Any]:
    """Every source's eta and V of the newest analysis run (the eta-V diagram), as columns."""
    import pyarrow.parquet as pq

    path = config.paths.results_dir / VARIABILITY_SUBDIR / LATEST_TABLE
    if not path.is_file():
        raise NotFoundError("no variability run has published its table yet")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise StateError(f"{path}: unreadable ({exc})") from None
    columns = [c for c in ETA_V_COLUMNS if c in table.column_names]
    data = table.select(columns).to_pydict()
    out: dict[str, Any] = {"source": str(path.name)}
    for name in columns:
        values = data[name]
        out[name] = [(_number(v) if name in ("eta", "v", "mean_flux_jy") else v) for v in values]
    return out


@dataclass(frozen=True)
class AnalysisRuns:
    """The analysis queue's outlook, the last run's record and the runs published on disk."""

    pending_blocks: int
    full_requested: bool
    last_finished: float | None
    last_status: str | None
    runs: list[dict[str, Any]]
    """Newest first: ``{"run", "candidates", "file"}`` per ``<run>.candidates.json``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def analysis_runs(config: Config, limit: int = 50) -> AnalysisRuns:
    """What the analyzer has done and will do next."""
    keys = Keys(config.redis.namespace)
    async with open_state(config) as redis:
        outlook = await AnalysisQueue(redis, keys, target=describe_target(config)).outlook()
    runs = await anyio.to_thread.run_sync(published_runs, config, limit)
    return AnalysisRuns(
        pending_blocks=outlook.pending,
        full_requested=outlook.full,
        last_finished=outlook.last_finished,
        last_status=outlook.last_status,
        runs=runs,
    )


def published_runs(config: Config, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` runs' candidate files, newest first, with how many each holds."""
    directory = config.paths.results_dir / VARIABILITY_SUBDIR
    files = _data_files(directory, "*" + RUN_CANDIDATES_SUFFIX)[::-1][:limit]
    runs = []
    for path in files:
        try:
            count: int | None = len(json.loads(path.read_text()).get("candidates") or [])
        except (OSError, ValueError, AttributeError):
            count = None
        runs.append(
            {
                "run": path.name.removesuffix(RUN_CANDIDATES_SUFFIX),
                "candidates": count,
                "file": str(path.relative_to(config.paths.results_dir)),
            }
        )
    return runs


@dataclass(frozen=True)
class ResultFile:
    """One file under ``paths.results_dir``."""

    path: str
    """Relative to the results directory (what the console's /files/ link takes)."""
    size: int
    modified: float
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FILE_KINDS = {
    ".fits": "FITS",
    ".parquet": "Parquet",
    ".vot": "VOTable",
    ".xml": "XML",
    ".json": "JSON",
    ".png": "PNG",
    ".csv": "CSV",
}


def result_files(config: Config, under: str = "", limit: int = MAX_FILES) -> list[ResultFile]:
    """The published files under ``results_dir/under`` (recursively), newest first."""
    root = config.paths.results_dir.resolve()
    base = resolve_result(config, under) if under else root
    if not base.is_dir():
        return []
    found: list[ResultFile] = []
    for path in base.rglob("*"):
        rel = path.relative_to(root)
        if any(_TEMPORARY.search(part) for part in rel.parts) or not path.is_file():
            continue
        kind = FILE_KINDS.get(path.suffix.lower())
        if kind is None:
            continue
        stat = path.stat()
        found.append(ResultFile(rel.as_posix(), stat.st_size, stat.st_mtime, kind))
    found.sort(key=lambda f: -f.modified)
    return found[:limit]


def resolve_result(config: Config, relative: str) -> Path:
    """A path under the results directory; anything that would leave it is a bad request."""
    root = config.paths.results_dir.resolve()
    if "\x00" in relative or relative.startswith("/"):
        raise BadRequestError(f"{relative[:64]!r} is not a path under the results")
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise BadRequestError(f"{relative[:64]!r} is not a path under the results")
    if any(_TEMPORARY.search(part) for part in path.relative_to(root).parts):
        raise NotFoundError(f"no result {relative[:64]!r}")
    return path


def result_file(config: Config, relative: str) -> Path:
    """An existing published file under the results directory."""
    path = resolve_result(config, relative)
    if not path.is_file():
        raise NotFoundError(f"no result {relative[:64]!r}")
    return path
