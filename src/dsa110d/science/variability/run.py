"""One variability analysis run: photometry files -> incremental state -> published results.

:func:`analyze` is the analyzer service's worker-process job (plain JSON arguments, a JSON
result). It

1. lists ``<results_dir>/photometry/*.parquet`` (one file per block run,
   ``<block>.v<n>.t<token>.parquet``: a re-run publishes a higher ``version`` under a new name
   and then removes the old file; of a block's files only the newest token's counts) and reads
   only the files whose identity (inode, mtime, size) changed since the state last saw them:
   a run costs O(rows in new or superseded blocks), plus a ``stat`` per file;
2. folds them into the :class:`~dsa110d.science.variability.state.VariabilityState` in time
   order (latest version of each block wins; the state subtracts a superseded version);
3. saves the state as a new *generation* and switches to it atomically;
4. writes the run's results (:func:`~dsa110d.science.variability.results.write_results`).

State on disk, under ``<results_dir>/variability/state/`` (shared by every analyzer host)::

    CURRENT            {"format": 1, "generation": "g000042"}
    g000042/           a ``store.save_state`` directory, plus
    g000042/ingest.json  the photometry files that state includes (identity, block versions)

A new generation hard-links the previous one's block files, so only new blocks are written,
and CURRENT is replaced last: a run killed at any point (its timeout, a lost lease, a power
cut) leaves the previous generation whole. A missing, unreadable or inconsistent state, a
photometry file that vanished (unless a newer version of each of its blocks is held from
another file: a re-run's), or a block whose newest file holds an older version than the
state does, all lead to a full rebuild from every file, which gives the same numbers as the
incremental path (``state`` guarantees it to ``METRIC_RTOL``). ``full=True``
asks for that rebuild on demand.

The worker process keeps the state of its last run in memory, keyed by generation, so
consecutive runs in one worker skip re-reading the state (a different generation on disk, made
by another host, is loaded instead); only states of at most :data:`CACHE_MAX_ROWS` measurements
are kept, so an idle worker does not hold a large history (those are re-read, ~1 s per 10^7
rows).

Files are read through ``photometry_table`` (the one reader: flag names -> codes, types), the
same reader a direct ``variability.recompute`` call and ``dsa110ctl lightcurve`` use, so the
service and the API count the same rows.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dsa110d.errors import VariabilityInputError
from dsa110d.science.atomic import atomic_file, is_temporary, newest_fenced
from dsa110d.science.photometry import table as photometry_table
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability import results as results
from dsa110d.science.variability.pairs import VS_THRESHOLD
from dsa110d.science.variability.state import BlockUpdate, VariabilityState
from dsa110d.science.variability.store import BLOCKS_DIR, load_state, save_state
from dsa110d.science.variability.voevent import DEFAULT_AUTHORITY

log = logging.getLogger(__name__)

PHOTOMETRY_SUBDIR = "photometry"
STATE_SUBDIR = "state"
CURRENT_FILE = "CURRENT"
INGEST_FILE = "ingest.json"
RUN_FORMAT = 1
MAX_LIGHT_CURVES = results.MAX_LIGHT_CURVES
MAX_STORED_CANDIDATES = 1000
"""Candidates returned to the service for its store (the JSON file on disk has them all)."""
UNUSABLE_FLAGS = photometry_table.UNUSABLE_FLAGS
INFORMATIONAL_FLAGS = photometry_table.INFORMATIONAL_FLAGS
flags_code = photometry_table.flags_code
CACHE_MAX_ROWS = 2_000_000
"""Measurements (~40 bytes each in memory) up to which a worker keeps the state between runs."""
_GENERATION = re.compile(r"^g(\d{6,})$")


def photometry_dir(results_dir: Path) -> Path:
    return results_dir / PHOTOMETRY_SUBDIR


def state_root(results_dir: Path) -> Path:
    return results_dir / results.RESULTS_SUBDIR / STATE_SUBDIR


# --------------------------------------------------------------------------- photometry files


@dataclass(frozen=True)
class FileSeen:
    """A photometry file as the state last read it: its identity and the blocks it held."""

    ino: int
    mtime_ns: int
    size: int
    blocks: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def of(cls, st: os.stat_result, **kw: Any) -> FileSeen:
        return cls(st.st_ino, st.st_mtime_ns, st.st_size, **kw)

    def same_file(self, st: os.stat_result) -> bool:
        return (self.ino, self.mtime_ns, self.size) == (st.st_ino, st.st_mtime_ns, st.st_size)

    def to_json(self) -> dict[str, Any]:
        return {
            "ino": self.ino,
            "mtime_ns": self.mtime_ns,
            "size": self.size,
            "blocks": self.blocks,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FileSeen:
        blocks = {str(b): int(v) for b, v in dict(doc.get("blocks") or {}).items()}
        error = doc.get("error")
        return cls(
            int(doc["ino"]),
            int(doc["mtime_ns"]),
            int(doc["size"]),
            blocks,
            None if error is None else str(error),
        )


def scan_photometry(directory: Path) -> dict[str, os.stat_result]:
    """The complete photometry files (``*.parquet``, no temporaries), by name; of a block's
    files (``<block>.v<n>.t<token>.parquet``, :func:`~dsa110d.science.atomic.fenced_name`)
    only the newest token's: an older one is the previous version, about to be removed, or a
    superseded holder's."""
    found: dict[str, os.stat_result] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return found
    for entry in entries:
        if not entry.name.endswith(".parquet") or is_temporary(Path(entry.name)):
            continue
        if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
            continue
        found[entry.name] = entry.stat(follow_symlinks=False)
    return {name: found[name] for name in newest_fenced(list(found))}


def read_photometry(path: Path) -> pd.DataFrame:
    """One photometry file as ``photometry_table``'s typed frame (one error line if bad)."""
    return photometry_table.read_table(path)


def _first_mjd(path: Path) -> float:
    """For time ordering: the earliest mjd in a file (inf when unreadable or empty)."""
    try:
        mjd = pd.read_parquet(path, columns=["mjd"])["mjd"].to_numpy(dtype=np.float64)
    except (OSError, ValueError, TypeError, KeyError):
        return float("inf")
    finite = mjd[np.isfinite(mjd)]
    return float(finite.min()) if finite.size else float("inf")


# --------------------------------------------------------------------------- state generations


@dataclass
class Opened:
    """The state a run starts from and how it was obtained."""

    state: VariabilityState
    seen: dict[str, FileSeen]
    generation: str | None
    how: str  # "cached", "loaded", "new", or "rebuilt: <why>"

    @property
    def fresh(self) -> bool:
        return self.how == "new" or self.how.startswith("rebuilt")


_CACHE: dict[str, tuple[str, VariabilityState, dict[str, FileSeen]]] = {}


def current_generation(root: Path) -> str | None:
    """The generation CURRENT names, None when there is no state yet."""
    path = root / CURRENT_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise VariabilityInputError(f"{path}: unreadable: {exc}") from None
    generation = doc.get("generation") if isinstance(doc, dict) else None
    if not isinstance(generation, str) or not _GENERATION.match(generation):
        raise VariabilityInputError(f"{path}: no valid generation in {doc!r}")
    return generation


def _load_seen(path: Path) -> dict[str, FileSeen]:
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != RUN_FORMAT:
            raise VariabilityInputError(f"{path}: format {doc.get('format')!r}")
        return {str(n): FileSeen.from_json(d) for n, d in doc["files"].items()}
    except VariabilityInputError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VariabilityInputError(f"{path}: unreadable ingest record: {exc}") from None


def _consistent(state: VariabilityState, seen: dict[str, FileSeen]) -> str | None:
    """Why the state and its ingest record disagree, or None."""
    listed = {b: v for f in seen.values() for b, v in f.blocks.items()}
    held = {b: c.version for b, c in state.blocks.items()}
    if listed != held:
        return "the state's blocks differ from its ingest record"
    return None


def open_state(root: Path, *, full: bool = False, vs_threshold: float = VS_THRESHOLD) -> Opened:
    """The state to start from: cached, loaded, new, or (full / unusable) rebuilt empty.

    The cached state is *taken* (the run mutates it; it is cached again only once saved). A
    state whose pairs were searched at another |Vs| threshold is rebuilt.
    """
    cached = _CACHE.pop(str(root), None)

    def empty() -> VariabilityState:
        return VariabilityState(vs_threshold=vs_threshold)

    if full:
        return Opened(empty(), {}, None, "rebuilt: requested")
    try:
        generation = current_generation(root)
        if generation is None:
            return Opened(empty(), {}, None, "new")
        if cached is not None and cached[0] == generation:
            state, seen, how = cached[1], dict(cached[2]), "cached"
        else:
            state = load_state(root / generation)
            seen = _load_seen(root / generation / INGEST_FILE)
            why = _consistent(state, seen)
            if why is not None:
                raise VariabilityInputError(f"{root / generation}: {why}")
            how = "loaded"
        if state.vs_threshold != vs_threshold:
            raise VariabilityInputError(
                f"{root / generation}: pairs searched at |Vs| >= {state.vs_threshold:g}, "
                f"configured {vs_threshold:g}"
            )
        return Opened(state, seen, generation, how)
    except VariabilityInputError as exc:
        log.warning("variability state unusable, rebuilding from all photometry: %s", exc)
        return Opened(empty(), {}, None, f"rebuilt: {exc}")


def _next_generation(root: Path) -> str:
    numbers = [int(m.group(1)) for p in _listdir(root) if (m := _GENERATION.match(p))]
    return f"g{max(numbers, default=0) + 1:06d}"


def _listdir(root: Path) -> list[str]:
    try:
        return os.listdir(root)
    except FileNotFoundError:
        return []


def save_generation(root: Path, opened: Opened, seen: dict[str, FileSeen]) -> str:
    """Write the state as a new generation, switch CURRENT to it, drop the older ones."""
    generation = _next_generation(root)
    target = root / generation
    shutil.rmtree(target, ignore_errors=True)
    blocks = target / BLOCKS_DIR
    blocks.mkdir(parents=True)
    if opened.generation is not None and not opened.fresh:
        for name in _listdir(root / opened.generation / BLOCKS_DIR):
            os.link(root / opened.generation / BLOCKS_DIR / name, blocks / name)
    else:
        for chunk in opened.state.blocks.values():
            chunk.saved = False  # nothing to link: write every block
    save_state(opened.state, target)
    doc = {"format": RUN_FORMAT, "files": {n: f.to_json() for n, f in sorted(seen.items())}}
    with atomic_file(target / INGEST_FILE) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    with atomic_file(root / CURRENT_FILE) as tmp:
        tmp.write_text(json.dumps({"format": RUN_FORMAT, "generation": generation}) + "\n")
    for name in _listdir(root):
        if _GENERATION.match(name) and name != generation:
            shutil.rmtree(root / name, ignore_errors=True)
    return generation


# --------------------------------------------------------------------------- the run


@dataclass
class Ingested:
    """What one run read from the photometry directory."""

    updates: list[BlockUpdate] = field(default_factory=list)
    files_read: int = 0
    bad_files: list[dict[str, str]] = field(default_factory=list)
    rebuild: str | None = None  # set when the incremental path cannot be exact


def ingest(directory: Path, state: VariabilityState, seen: dict[str, FileSeen]) -> Ingested:
    """Fold new and changed photometry files into ``state`` (updating ``seen``), in time order."""
    files = scan_photometry(directory)
    out = Ingested()
    gone = sorted(set(seen) - set(files))
    changed = [n for n, st in files.items() if n not in seen or not seen[n].same_file(st)]
    changed.sort(key=lambda n: (_first_mjd(directory / n), n))
    for name in changed:
        path = directory / name
        st = files[name]
        try:
            rows = read_photometry(path)
            updates = state.apply_block(rows, where=str(path)) if len(rows) else []
        except VariabilityInputError as exc:
            log.warning("skipping photometry file: %s", exc)
            out.bad_files.append({"file": str(path), "reason": str(exc)})
            seen[name] = FileSeen.of(st, error=str(exc))
            continue
        out.files_read += 1
        out.updates.extend(updates)
        in_file = {u.block_id: u.version for u in updates}
        seen[name] = FileSeen.of(st, blocks=in_file)
        for block_id, version in in_file.items():
            held = state.blocks.get(block_id)
            if held is not None and held.version != version:
                out.rebuild = f"block {block_id}: {path} holds v{version}, state v{held.version}"
    if gone and out.rebuild is None:
        if all(_superseded(seen[name], seen, files) for name in gone):
            for name in gone:  # a re-run's newer file replaced it: its blocks are held already
                del seen[name]
        else:
            out.rebuild = f"photometry file(s) removed: {', '.join(gone[:5])}"
    return out


def thresholds_from(doc: dict[str, Any]) -> var.Thresholds:
    """The classification thresholds from the service's JSON (keys it omits keep defaults)."""
    base = var.Thresholds()
    return var.Thresholds(
        min_data_points=int(doc["min_data_points"]),
        variability_threshold=float(doc["variability_threshold"]),
        p_threshold=float(doc["p_threshold"]),
        vs_threshold=float(doc.get("vs_threshold", base.vs_threshold)),
        m_threshold=float(doc.get("m_threshold", base.m_threshold)),
        false_discovery_rate=float(doc.get("false_discovery_rate", base.false_discovery_rate)),
        min_mean_snr=float(doc.get("min_mean_snr", base.min_mean_snr)),
    )


def _superseded(old: FileSeen, seen: dict[str, FileSeen], files: dict[str, os.stat_result]) -> bool:
    """True when every block of a vanished file is held from a present file at a newer
    version (the state then holds nothing of the vanished one). The same version from
    another file is not enough: the state may hold the vanished file's rows of it."""
    newest: dict[str, int] = {}
    for name in files:
        for block_id, version in seen[name].blocks.items() if name in seen else ():
            newest[block_id] = max(version, newest.get(block_id, 0))
    return all(newest.get(b, -1) > v for b, v in old.blocks.items())


def analyze(
    results_dir: str,
    thresholds: dict[str, Any],
    run_time: str,
    full: bool = False,
    max_light_curves: int = MAX_LIGHT_CURVES,
    voevent_authority: str | None = DEFAULT_AUTHORITY,
) -> dict[str, Any]:
    """One analysis run (see the module docstring); returns the run summary as JSON data.

    ``voevents`` lists the VOEvent packets this run wrote (new candidates), for the service
    to announce; None as the authority writes none.
    """
    started = time.monotonic()
    res_dir = Path(results_dir)
    root = state_root(res_dir)
    when = datetime.fromisoformat(run_time)
    limits = thresholds_from(thresholds)
    opened = open_state(root, full=full, vs_threshold=limits.vs_threshold)
    got = ingest(photometry_dir(res_dir), opened.state, opened.seen)
    if got.rebuild is not None:
        log.warning("variability state rebuilt from all photometry: %s", got.rebuild)
        fresh = VariabilityState(vs_threshold=limits.vs_threshold)
        opened = Opened(fresh, {}, opened.generation, f"rebuilt: {got.rebuild}")
        got = ingest(photometry_dir(res_dir), opened.state, opened.seen)
    generation = opened.generation
    if got.files_read or got.bad_files or opened.fresh:
        generation = save_generation(root, opened, opened.seen)
    rows = sum(chunk.codes.size for chunk in opened.state.blocks.values())
    if generation is not None and rows <= CACHE_MAX_ROWS:
        _CACHE[str(root)] = (generation, opened.state, dict(opened.seen))
    frame = var.metrics_frame(opened.state.metrics(), limits)
    outputs = results.write_results(
        frame,
        res_dir,
        when,
        limits,
        opened.state.light_curves,
        max_light_curves=max_light_curves,
        voevent_authority=voevent_authority,
    )
    cands = results.candidates(frame)
    actions = [u.action for u in got.updates]
    return {
        "summary": results.summary(frame, when, limits),
        "run": {
            "state": opened.how,
            "generation": generation,
            "files_read": got.files_read,
            "bad_files": got.bad_files,
            "blocks_added": actions.count("added"),
            "blocks_replaced": actions.count("replaced"),
            "rows_added": int(sum(u.rows for u in got.updates)),
            "blocks_total": len(opened.state.blocks),
            "seconds": round(time.monotonic() - started, 3),
        },
        "outputs": {
            "table": str(outputs.table),
            "latest": str(outputs.latest),
            "candidates": str(outputs.candidates),
            "eta_v_plot": None if outputs.eta_v_plot is None else str(outputs.eta_v_plot),
            "light_curves": [str(p) for p in outputs.light_curves],
            "light_curve_tables": [str(p) for p in outputs.light_curve_tables],
            "candidates_votable": (
                None if outputs.candidates_votable is None else str(outputs.candidates_votable)
            ),
        },
        "voevents": [{k: results._json_value(v) for k, v in e.items()} for e in outputs.voevents],
        "candidates": results.candidate_records(cands.head(MAX_STORED_CANDIDATES)),
    }
