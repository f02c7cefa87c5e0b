"""The watcher's decisions that need no server: when a file is settled, whether it is inside
the watched tree, what a probe found (typed, and as plain data for a worker process), how a set that
waited too long is treated. (The HDF5_PROCESSING payload is in :mod:`dsa110d.contracts`.)

Pure and synchronous (stdlib, numpy-free), so the service stays a thin adapter and each rule
has a unit test. Names, probing and grouping themselves are
:mod:`~dsa110d.science.hdf5.subbands`, :mod:`~dsa110d.science.hdf5.probe` and
:mod:`~dsa110d.science.hdf5.sets`.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dsa110d.errors import InputFileError, describe, is_service_fault
from dsa110d.science.constants import NAME_TIME_FORMAT
from dsa110d.science.hdf5.probe import probe_subband
from dsa110d.science.hdf5.sets import SubbandFile, SubbandGroup, time_disagreement
from dsa110d.science.hdf5.subbands import parse_subband_name

OUTSIDE_TREE = "outside_tree"
BAD_FILE = "bad_file"
GONE = "gone"
BY_NAME_SUFFIX = "_byname"
"""Suffix of the id of a set known only by file names (its files could not be read)."""


# --- Is the file settled? ---------------------------------------------------------------


@dataclass(frozen=True)
class Look:
    """One look at a file: what must not change between two looks for it to count."""

    size: int
    mtime_ns: int
    is_regular: bool
    inode: int = 0
    """With size and mtime, the file's identity for the probe cache: a file replaced under
    the same name (a rename over it) is another file even with the same size and mtime."""


def look_at(path: str | os.PathLike[str]) -> Look | None:
    """``stat`` (following symlinks; a dangling symlink is looked at itself, so that it is
    reported rather than ignored); None when the path is gone (renamed away, deleted)."""
    try:
        info = os.stat(path)
    except OSError:
        try:
            info = os.lstat(path)
        except OSError:
            return None
    return Look(info.st_size, info.st_mtime_ns, stat.S_ISREG(info.st_mode), info.st_ino)


def settle_wait_sec(look: Look, now_ns: int, interval_sec: float) -> float:
    """How long to wait before the second look: the stability interval counted from the
    file's last modification (a file untouched for the interval needs no wait: no write can
    have happened within it, so its size was stable across it)."""
    since = (now_ns - look.mtime_ns) / 1e9
    return max(0.0, interval_sec - since)


def is_settled(first: Look | None, second: Look | None) -> bool:
    """True when both looks saw the file and nothing changed in between."""
    return first is not None and first == second


# --- Is it inside the watched tree? -----------------------------------------------------


def resolve_inside(
    path: str | os.PathLike[str], root: str | os.PathLike[str], root_resolved: bool = False
) -> Path:
    """``path`` absolute and resolved; ``InputFileError`` if it (a symlink) leads out of
    ``root``, since a message may only carry paths under the watched directory
    (``root_resolved``: ``root`` is already absolute and resolved, as for a whole batch)."""
    resolved = Path(path).resolve()  # a symlink loop raises (RuntimeError before 3.13)
    real_root = Path(root) if root_resolved else Path(root).resolve()
    if not resolved.is_relative_to(real_root):
        raise InputFileError(
            f"{path}: symlink points outside the watched directory {real_root} (to {resolved})"
        )
    return resolved


# --- Probing: typed outcomes, and plain data for a worker process ------------------------


@dataclass(frozen=True)
class GoodSubband:
    """A file the probe accepted, with what grouping needs to know of it."""

    path: str
    resolved: str
    """Where the path leads (inside the watched tree): what the set records and announces."""
    set_id: str
    subband: int
    name_time: float
    """The file name's timestamp, Unix seconds."""
    time0_jd: float
    integration_s: float
    dec_rad: float | None


@dataclass(frozen=True)
class FileFault:
    """A file that is not a usable subband: ``kind`` (OUTSIDE_TREE, BAD_FILE, or GONE when
    the path vanished while being looked at) and one line naming the file."""

    path: str
    kind: str
    reason: str


ProbeOutcome = GoodSubband | FileFault
_GOOD_FIELDS = frozenset(GoodSubband.__dataclass_fields__)
_FAULT_FIELDS = frozenset(FileFault.__dataclass_fields__)


def outcome_json(outcome: ProbeOutcome) -> dict[str, Any]:
    """The outcome as JSON-able data (a worker's reply, the probe cache's entry)."""
    return {"ok": isinstance(outcome, GoodSubband), **asdict(outcome)}


def outcome_of(data: Any) -> ProbeOutcome:
    """The outcome :func:`outcome_json` made; ``ValueError`` for anything else (a cache entry
    of another version, a damaged reply)."""
    if not isinstance(data, dict):
        raise ValueError(f"a probe outcome is a JSON object, not {type(data).__name__}")
    fields = {k: v for k, v in data.items() if k != "ok"}
    try:
        if data.get("ok") is True and set(fields) == _GOOD_FIELDS:
            return GoodSubband(**fields)
        if data.get("ok") is False and set(fields) == _FAULT_FIELDS:
            return FileFault(**fields)
    except TypeError as exc:
        raise ValueError(f"not a probe outcome: {exc}") from None
    raise ValueError(f"not a probe outcome: fields {sorted(data)}")


def probe_files(paths: Sequence[str], root: str) -> list[dict[str, Any]]:
    """:func:`probe_outcomes` as JSON-able data (:func:`outcome_json`): what a probe worker
    process runs (its reply crosses a pipe as JSON)."""
    return [outcome_json(o) for o in probe_outcomes(paths, root)]


def probe_outcomes(paths: Sequence[str], root: str) -> list[ProbeOutcome]:
    """Check each path as a subband file (read-only): a :class:`GoodSubband` or a
    :class:`FileFault` each, in order.

    The fault boundary of one file: whatever one file raises becomes its outcome, and the
    other files are still probed (a service fault, which a probe should never raise, is
    raised)."""
    real_root = Path(root).resolve()
    return [probe_one(p, real_root) for p in paths]


def probe_one(path: str, root: Path) -> ProbeOutcome:
    """:func:`probe_outcomes` for one path (``root`` absolute and resolved)."""
    try:
        return _probe_one(path, root)
    except Exception as exc:
        if is_service_fault(exc):
            raise
        return file_fault(path, exc)


def file_fault(path: str, exc: BaseException | str, kind: str = BAD_FILE) -> FileFault:
    """The outcome of a file that could not be probed: one line naming the file."""
    reason = describe(InputFileError(exc) if isinstance(exc, str) else exc)
    if not reason.startswith(path):
        reason = describe(InputFileError(f"{path}: {reason}"))
    return FileFault(path, kind, reason)


def _probe_one(path: str, root: Path) -> ProbeOutcome:
    try:
        resolved = resolve_inside(path, root, root_resolved=True)
    except InputFileError as exc:
        return file_fault(path, exc, OUTSIDE_TREE)
    if not str(resolved).isascii() and not _is_utf8(str(resolved)):
        # a symlink to a name of undecodable bytes: no message or record could carry it
        return file_fault(path, f"{path}: leads to a name that is not UTF-8 ({resolved!a})")
    try:
        probe = probe_subband(resolved, name=path)
    except InputFileError as exc:
        if not os.path.lexists(path):  # renamed away or deleted meanwhile: not a fault
            return file_fault(path, exc, GONE)
        return file_fault(path, exc)
    name = parse_subband_name(path)
    if name is None:  # the watcher only probes subband names; keep this total anyway
        return file_fault(path, f"{path}: not a subband name")
    return GoodSubband(
        path=path,
        resolved=str(resolved),
        set_id=probe.set_id,
        subband=name.subband,
        name_time=name.timestamp.timestamp(),
        time0_jd=probe.time0_jd,
        integration_s=probe.integration_s,
        dec_rad=probe.phase_center_dec_rad,
    )


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (a file name of undecodable bytes holds surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# --- Which set does a file belong to? ---------------------------------------------------


def by_name_set_id(name_time: float) -> str:
    """The id of a set known only by a file-name timestamp (Unix seconds)."""
    moment = datetime.fromtimestamp(name_time, UTC)
    return moment.strftime(NAME_TIME_FORMAT) + BY_NAME_SUFFIX


def nearest_set(
    name_time: float, neighbours: Sequence[tuple[str, float]], tolerance_sec: float
) -> str | None:
    """The set (id, earliest name time) nearest ``name_time`` within the tolerance, preferring
    timed sets over by-name ones; None if none is near."""
    near = [
        (abs(t - name_time), sid) for sid, t in neighbours if abs(t - name_time) <= tolerance_sec
    ]
    timed = [n for n in near if not n[1].endswith(BY_NAME_SUFFIX)]
    best = min(timed or near, default=None)
    return None if best is None else best[1]


def disagreement(
    path: str,
    time0_jd: float,
    other_set_id: str,
    other_time0_jd: float,
    other_paths: Sequence[str],
    tolerance_sec: float,
) -> str | None:
    """Why a file whose ``time_array[0]`` starts a new set disagrees with a neighbouring set
    named within the tolerance (via :func:`~dsa110d.science.hdf5.sets.time_disagreement`),
    or None."""
    name = parse_subband_name(path)
    if name is None:
        return None
    f = SubbandFile(path, name.timestamp, name.subband, time0_jd)
    members = []
    for p in other_paths:
        other = parse_subband_name(p)
        if other is not None:
            members.append(SubbandFile(p, other.timestamp, other.subband, other_time0_jd))
    if not members:
        return None
    group = SubbandGroup(other_set_id, other_time0_jd, tuple(members))
    return time_disagreement(f, group, tolerance_sec)


# --- A set that waited too long -----------------------------------------------------------


def incomplete_action(policy: str, age_sec: float, timeout_sec: float, n_subbands: int) -> str:
    """What to do with an unannounced, incomplete set: ``none`` (not yet timed out),
    ``wait`` (report it, keep waiting), ``partial`` (announce what is there) or ``fail``.
    A set with no readable subband cannot be announced, so ``partial`` fails it."""
    if age_sec < timeout_sec:
        return "none"
    if policy == "partial" and n_subbands == 0:
        return "fail"
    return policy


def incomplete_reason(set_id: str, missing: Sequence[int], age_sec: float) -> str:
    listed = ", ".join(f"sb{sb:02d}" for sb in missing)
    return f"set {set_id}: still missing {listed} after {age_sec:.0f} s"


def move_files(paths: Sequence[str], dest: str | os.PathLike[str]) -> list[str]:
    """Move a converted set's files into ``dest`` (post_handle ``move``); returns the new
    paths. Content is untouched (a rename, or copy-then-unlink across filesystems); a file
    already gone is skipped, so a repeated move is harmless."""
    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    moved = []
    for p in paths:
        source = Path(p)
        if not source.exists():
            continue
        moved.append(str(shutil.move(source, target / source.name)))
    return moved
