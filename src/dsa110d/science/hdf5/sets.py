"""Subbands grouped into sets.

Subbands join a set by their bit-identical ``Header/time_array[0]``; files without a readable
time fall back to their name timestamp within a tolerance (``group_subbands``). A file named
like a set's files whose time disagrees is a suspect, recorded against the set
(``time_disagreement``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from dsa110d.science.constants import NAME_TIME_FORMAT, SECONDS_PER_DAY
from dsa110d.science.hdf5.subbands import set_id_from_time

DEFAULT_GROUP_TOLERANCE_SEC = 60.0
"""Name timestamps of one set's subbands differ by up to this, seconds (real code: 60-120)."""


@dataclass(frozen=True)
class SubbandFile:
    """One subband file as the grouping sees it."""

    path: str
    name_time: datetime
    subband: int
    time0_jd: float | None = None
    """``Header/time_array[0]`` when the file could be read, else None."""
    integration_s: float = 0.0
    """``Header/integration_time[0]`` (for the set id), seconds."""


@dataclass(frozen=True)
class SubbandGroup:
    """One set's files as grouped: by subband, with any second file for a subband apart."""

    set_id: str
    time0_jd: float | None
    """The set's bit-identical key; None for a group formed by name timestamps alone."""
    files: tuple[SubbandFile, ...]
    """One file per subband, ordered by subband."""
    duplicates: tuple[SubbandFile, ...] = ()
    """Further files for a subband already present (reported, never dropped silently)."""

    @property
    def subbands(self) -> tuple[int, ...]:
        return tuple(f.subband for f in self.files)

    def is_complete(self, expected_subbands: int) -> bool:
        return set(self.subbands) >= set(range(expected_subbands))


def _build_group(set_id: str, time0: float | None, members: Sequence[SubbandFile]) -> SubbandGroup:
    chosen: dict[int, SubbandFile] = {}
    extra: list[SubbandFile] = []
    # First by name time then path: the same input set always keeps the same file.
    for f in sorted(members, key=lambda f: (f.subband, f.name_time, f.path)):
        if f.subband in chosen:
            extra.append(f)
        else:
            chosen[f.subband] = f
    return SubbandGroup(set_id, time0, tuple(chosen[s] for s in sorted(chosen)), tuple(extra))


def group_subbands(
    files: Iterable[SubbandFile], tolerance_sec: float = DEFAULT_GROUP_TOLERANCE_SEC
) -> list[SubbandGroup]:
    """Group subband files into sets; the result does not depend on the input's order.

    Files with a ``time0_jd`` group by exact equality of it. A file without one joins the
    timed group whose name timestamps are nearest, if within ``tolerance_sec``; the rest
    cluster by name timestamp (a cluster spans at most ``tolerance_sec`` from its earliest
    file) and take the earliest name timestamp as their id. Groups are returned by time.
    """
    items = sorted(set(files), key=lambda f: (f.name_time, f.subband, f.path))
    timed: dict[float, list[SubbandFile]] = {}
    untimed: list[SubbandFile] = []
    for f in items:
        if f.time0_jd is None:
            untimed.append(f)
        else:
            timed.setdefault(f.time0_jd, []).append(f)
    leftovers: list[SubbandFile] = []
    for f in untimed:
        key = _nearest_timed(f, timed, tolerance_sec)
        if key is None:
            leftovers.append(f)
        else:
            timed[key].append(f)
    groups = [_build_group(set_id_from_time(t0, _integration(m)), t0, m) for t0, m in timed.items()]
    groups += [
        _build_group(m[0].name_time.strftime(NAME_TIME_FORMAT), None, m)
        for m in _cluster_by_name(leftovers, tolerance_sec)
    ]
    return sorted(groups, key=lambda g: (g.files[0].name_time, g.set_id))


def _integration(members: Sequence[SubbandFile]) -> float:
    """The integration time of a timed group (the smallest, should its files disagree)."""
    return min(m.integration_s for m in members if m.time0_jd is not None)


def _nearest_timed(
    f: SubbandFile, timed: dict[float, list[SubbandFile]], tolerance_sec: float
) -> float | None:
    best: tuple[float, float] | None = None
    for t0, members in timed.items():
        gap = min(
            abs((m.name_time - f.name_time).total_seconds())
            for m in members
            if m.time0_jd is not None
        )
        if gap <= tolerance_sec and (best is None or (gap, t0) < best):
            best = (gap, t0)
    return None if best is None else best[1]


def _cluster_by_name(files: Sequence[SubbandFile], tolerance_sec: float) -> list[list[SubbandFile]]:
    clusters: list[list[SubbandFile]] = []
    for f in sorted(files, key=lambda f: (f.name_time, f.subband, f.path)):
        if clusters and (f.name_time - clusters[-1][0].name_time).total_seconds() <= tolerance_sec:
            clusters[-1].append(f)
        else:
            clusters.append([f])
    return clusters


def time_disagreement(
    f: SubbandFile, group: SubbandGroup, tolerance_sec: float = DEFAULT_GROUP_TOLERANCE_SEC
) -> str | None:
    """Why ``f`` looks like a member of ``group`` by name yet disagrees on time, or None.

    A file whose name timestamp is within ``tolerance_sec`` of the set's files but whose
    ``time_array[0]`` differs from the set's is suspect (a node clock or header fault): the
    watcher records it against the set instead of silently starting a new one.
    """
    if f.time0_jd is None or group.time0_jd is None or f.time0_jd == group.time0_jd:
        return None
    near = any(
        abs((m.name_time - f.name_time).total_seconds()) <= tolerance_sec for m in group.files
    )
    if not near:
        return None
    delta_s = (f.time0_jd - group.time0_jd) * SECONDS_PER_DAY
    return (
        f"{f.path}: time_array[0] differs by {delta_s:+.3f} s from set {group.set_id} "
        f"whose files are named within {tolerance_sec:g} s of it"
    )
