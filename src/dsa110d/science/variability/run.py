"""One variability analysis run: photometry files -> incremental state -> published results.

:func:`analyze` is the analyzer service's worker-process job (plain JSON arguments, a JSON
result). It

1. lists ``<results_dir>/photometry/*.parquet`` (one file per block, replaced atomically by
   the processor with a higher ``version`` when the block is re-run) and reads only the files
   whose identity (inode, mtime, size) changed since the state last saw them: a run costs
   O(rows in new or superseded blocks), plus a ``stat`` per file;
2. folds them into the :class:`~dsa110d.science.variability.state.VariabilityState` in time
   order (latest version of each block wins; the state subtracts a superseded version);
3. saves the state as a new *generation* and switches to it atomically;
4. writes the run's results (:func:`~dsa110d.science.variability.results.write_results`).

State on disk, under ``<results_dir>/variability/state/`` (shared by every analyzer host)::

    CURRENT            {"format": 1, "generation": "g000042"}
    g000042/           a VariabilityState.save() directory, plus
    g000042/ingest.json  the photometry files that state includes (identity, block versions)

A new generation hard-links the previous one's block files, so only new blocks are written,
and CURRENT is replaced last: a run killed at any point (its timeout, a lost lease, a power
cut) leaves the previous generation whole. A missing, unreadable or inconsistent state, a
photometry file that vanished, or a block whose newest file holds an older version than the
state does, all lead to a full rebuild from every file, which gives the same numbers as the
incremental path (``variability_state`` guarantees it to ``METRIC_RTOL``). ``full=True``
asks for that rebuild on demand.

The worker process keeps the state of its last run in memory, keyed by generation, so
consecutive runs in one worker skip re-reading the state (a different generation on disk, made
by another host, is loaded instead); only states of at most :data:`CACHE_MAX_ROWS` measurements
are kept, so an idle worker does not hold a large history (those are re-read, ~1 s per 10^7
rows).

Flags: the processor writes ``flags`` as a comma-separated list of flag names (empty when
clean) while the metrics count a row only when ``flags == 0``; :func:`flags_code` maps names
to that rule: a row is unusable when it carries a flag of :data:`UNUSABLE_FLAGS` or any name
this module does not know; :data:`INFORMATIONAL_FLAGS` (``missing_chunks``: the block lacked
some chunks, which the processor puts on *every* row of such a block, while the sources it
measured are measured properly; ``blended``: the flux includes an unseparated neighbour's) keep
the row. Integer flags pass unchanged.
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
from dsa110d.science.atomic import atomic_file, is_temporary
from dsa110d.science.variability import metrics as var
from dsa110d.science.variability import results
from dsa110d.science.variability.state import BLOCKS_DIR, BlockUpdate, VariabilityState

log = logging.getLogger(__name__)

PHOTOMETRY_SUBDIR = "photometry"
STATE_SUBDIR = "state"
CURRENT_FILE = "CURRENT"
INGEST_FILE = "ingest.json"
RUN_FORMAT = 1
MAX_LIGHT_CURVES = results.MAX_LIGHT_CURVES
MAX_STORED_CANDIDATES = 1000
"""Candidates returned to the service for its store (the JSON file on disk has them all)."""
UNUSABLE_FLAGS = frozenset({"no_data", "partial_transit"})
"""Photometry flags (science/photometry/) that make a row unusable: no visibilities, or a
block far from the source's transit (its best beam gain below a fraction of the transit gain:
a block nearer the transit measures it better)."""
INFORMATIONAL_FLAGS = frozenset({"missing_chunks", "blended"})
"""Photometry flags that describe the block or the source's surroundings, not a fault of the
measurement: the row is kept (a blend with a neighbour too close to separate is the same blend
every day, so its variability is still real)."""
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
    """The complete photometry files (``*.parquet``, no temporaries), by name."""
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
    return found


def flags_code(flags: pd.Series) -> pd.Series:
    """Flags as the metrics want them: 0 when the row is clean (see the module docstring)."""
    if pd.api.types.is_numeric_dtype(flags) and not pd.api.types.is_bool_dtype(flags):
        return flags
    text = flags.astype("string").fillna("")
    codes = np.zeros(len(text), dtype=np.int64)
    for value in pd.unique(text):  # a handful of distinct flag lists per file
        names = {n.strip() for n in str(value).split(",")} - {""}
        if names - INFORMATIONAL_FLAGS:
            codes[(text == value).to_numpy()] = 1
    return pd.Series(codes, index=flags.index)


def read_photometry(path: Path) -> pd.DataFrame:
    """One photometry file, flags normalised; a bad file is one VariabilityInputError line."""
    try:
        rows = pd.read_parquet(path)
    except (OSError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VariabilityInputError(f"{path}: unreadable photometry: {first}") from None
    var.usable_rows(rows.iloc[:0], where=str(path))  # the column check, one line
    if not len(rows):
        return rows
    rows = rows.copy()
    rows["flags"] = flags_code(rows["flags"])
    try:
        rows["version"].to_numpy().astype(np.int64)
    except (TypeError, ValueError):
        raise VariabilityInputError(f"{path}: column version is not an integer") from None
    return rows


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


def open_state(root: Path, *, full: bool = False) -> Opened:
    """The state to start from: cached, loaded, new, or (full / unusable) rebuilt empty.

    The cached state is *taken* (the run mutates it; it is cached again only once saved).
    """
    cached = _CACHE.pop(str(root), None)
    if full:
        return Opened(VariabilityState(), {}, None, "rebuilt: requested")
    try:
        generation = current_generation(root)
        if generation is None:
            return Opened(VariabilityState(), {}, None, "new")
        if cached is not None and cached[0] == generation:
            return Opened(cached[1], dict(cached[2]), generation, "cached")
        state = VariabilityState.load(root / generation)
        seen = _load_seen(root / generation / INGEST_FILE)
        why = _consistent(state, seen)
        if why is not None:
            raise VariabilityInputError(f"{root / generation}: {why}")
        return Opened(state, seen, generation, "loaded")
    except VariabilityInputError as exc:
        log.warning("variability state unusable, rebuilding from all photometry: %s", exc)
        return Opened(VariabilityState(), {}, None, f"rebuilt: {exc}")


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
    opened.state.save(target)
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
    if gone:
        out.rebuild = f"photometry file(s) removed: {', '.join(gone[:5])}"
        return out
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
    return out


def analyze(
    results_dir: str,
    thresholds: dict[str, Any],
    run_time: str,
    full: bool = False,
    max_light_curves: int = MAX_LIGHT_CURVES,
) -> dict[str, Any]:
    """One analysis run (see the module docstring); returns the run summary as JSON data."""
    started = time.monotonic()
    res_dir = Path(results_dir)
    root = state_root(res_dir)
    when = datetime.fromisoformat(run_time)
    limits = var.Thresholds(
        min_data_points=int(thresholds["min_data_points"]),
        variability_threshold=float(thresholds["variability_threshold"]),
        p_threshold=float(thresholds["p_threshold"]),
    )
    opened = open_state(root, full=full)
    got = ingest(photometry_dir(res_dir), opened.state, opened.seen)
    if got.rebuild is not None:
        log.warning("variability state rebuilt from all photometry: %s", got.rebuild)
        opened = Opened(VariabilityState(), {}, opened.generation, f"rebuilt: {got.rebuild}")
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
        },
        "candidates": results.candidate_records(cands.head(MAX_STORED_CANDIDATES)),
    }
