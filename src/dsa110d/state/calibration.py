"""The registry of calibration solutions: which solution applies to which time range, from
which calibrator transit, with what quality.

The ``calibrate`` stage writes each solution as a CASA calibration table plus a JSON sidecar
(``<results_dir>/cal/<kind>/<solution_id>.json``, kind ``bandpass`` or ``gains``; the fields
are :class:`CalSolution`'s). When the processor commits a block whose stage results name such
sidecars, it registers them here **in the block's fenced transaction**
(:meth:`Calibrations.stage_register` queued inside ``Leases.run_fenced``): a holder whose token
is stale registers nothing, and registering an id already registered changes nothing, so each
solution is registered exactly once however many daemons run the block.

Keys (:mod:`dsa110d.state.keys`):

* ``cal:solution:<id>``: hash, the sidecar's fields (lists as JSON) plus the registry's own:
  ``path`` (the published sidecar), ``table_path``, ``token`` (the fencing token of the run
  that registered it), ``registered_at`` (Unix s) and ``superseded_by``;
* ``cal:index:<kind>``: sorted set of ids scored by ``valid_from_mjd``;
* ``cal:block:<block id>``: hash kind -> the newest id the block's runs registered: a re-run of
  the block (version n+1, after a late chunk) supersedes the solution of version n;
* ``cal:counts``: hash ``<kind>:<status>`` -> count (status ok, poor or superseded), kept by
  the registering script so that the metrics never scan the registry;
* ``cal:coverage``: ``first_mjd``/``last_mjd`` of the blocks a calibrate stage has run on,
  with or without a new solution: how much data has gone by since the newest bandpass.

A solution is **valid** when its status is ``ok`` and nothing superseded it; :meth:`resolve`
gives, for a time, the newest valid bandpass and the newest valid gains whose validity covers
it. :meth:`summary` is what the metrics and the processor's health read.
"""

from __future__ import annotations

import enum
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio.client import Pipeline

from dsa110d.errors import StateError
from dsa110d.science.constants import SECONDS_PER_DAY, UNIX_EPOCH_MJD
from dsa110d.state import lua
from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.keys import Keys

KINDS = ("bandpass", "gains")
"""The kinds of solution the calibrate stage writes (its outputs ``cal_<kind>``)."""
OUTPUT_PREFIX = "cal_"
"""A stage output ``cal_<kind>`` names the sidecar of a solution of that kind."""
SOLUTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,199}$")
"""A solution id names files and keys: no slashes, no spaces, no leading dot."""
SCAN_LIMIT = 64
"""Solutions looked at, newest first, when searching for the valid one covering a time: a
bandpass is solved once a day and gains once a block, so the answer is among the newest few;
older poor or superseded ones beyond this are not worth a longer walk."""


class SolutionStatus(enum.StrEnum):
    OK = "ok"
    """The solver's QA passed: the solution may be applied."""
    POOR = "poor"
    """The solver's QA failed (low SNR, too many flagged or outlier antennas): not applied."""
    SUPERSEDED = "superseded"
    """A newer run of the same block registered a solution of the same kind."""


STATUSES: tuple[str, ...] = tuple(s.value for s in SolutionStatus)


def unix_to_mjd(stamp: float) -> float:
    return stamp / SECONDS_PER_DAY + UNIX_EPOCH_MJD


def mjd_to_unix(mjd: float) -> float:
    return (mjd - UNIX_EPOCH_MJD) * SECONDS_PER_DAY


@dataclass(frozen=True)
class CalSolution:
    """One solution: the sidecar's fields (the contract with the calibrate stage) and what
    the registry adds (where it was published, by which token, and what superseded it)."""

    solution_id: str
    kind: str
    block_id: str
    block_version: int
    set_ids: tuple[str, ...]
    valid_from_mjd: float
    valid_to_mjd: float
    calibrator: str | None
    reference_antenna: int
    n_antennas: int
    flagged_antennas: tuple[int, ...]
    snr_median: float
    amp_scatter: float
    phase_scatter_deg: float
    outlier_antennas: tuple[int, ...]
    table: str
    created_at: str
    status: str
    path: str = ""
    table_path: str = ""
    token: int = 0
    registered_at: float = 0.0
    superseded_by: str = ""

    @property
    def effective_status(self) -> str:
        """``superseded`` once a newer run replaced it, else the solver's ``ok``/``poor``."""
        return SolutionStatus.SUPERSEDED.value if self.superseded_by else self.status

    @property
    def valid(self) -> bool:
        """May be applied: QA passed and not superseded."""
        return self.status == SolutionStatus.OK and not self.superseded_by

    def covers(self, mjd: float) -> bool:
        return self.valid_from_mjd <= mjd <= self.valid_to_mjd

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for name in ("set_ids", "flagged_antennas", "outlier_antennas"):
            doc[name] = list(doc[name])
        doc["effective_status"] = self.effective_status
        return doc

    @classmethod
    def from_sidecar(
        cls, doc: Mapping[str, Any], path: str = "", table_path: str = ""
    ) -> CalSolution:
        """Check a sidecar's document (StateError naming the field otherwise)."""
        read = _Sidecar(doc, f"calibration sidecar {path or '(document)'}")
        solution_id = read.choice("solution_id", None)
        kind = read.choice("kind", KINDS)
        status = read.choice("status", (SolutionStatus.OK.value, SolutionStatus.POOR.value))
        valid_from, valid_to = read.number("valid_from_mjd"), read.number("valid_to_mjd")
        if valid_to < valid_from:
            raise StateError(f"{read.where}: valid_to_mjd {valid_to} is before valid_from_mjd")
        return cls(
            solution_id=solution_id,
            kind=kind,
            block_id=read.field("block_id", str),
            block_version=read.integer("block_version"),
            set_ids=read.strings("set_ids"),
            valid_from_mjd=valid_from,
            valid_to_mjd=valid_to,
            calibrator=read.calibrator(),
            reference_antenna=read.integer("reference_antenna"),
            n_antennas=read.integer("n_antennas"),
            flagged_antennas=read.integers("flagged_antennas"),
            snr_median=read.number("snr_median"),
            amp_scatter=read.number("amp_scatter"),
            phase_scatter_deg=read.number("phase_scatter_deg"),
            outlier_antennas=read.integers("outlier_antennas"),
            table=read.field("table", str),
            created_at=read.field("created_at", str),
            status=status,
            path=path,
            table_path=table_path,
        )

    def _fields(self) -> list[str]:
        """Field/value pairs as stored (lists and the nullable calibrator as JSON)."""
        doc = asdict(self)
        pairs: list[str] = []
        for name, value in doc.items():
            if isinstance(value, (list, tuple)) or name == "calibrator":
                text = json.dumps(list(value) if isinstance(value, (list, tuple)) else value)
            elif isinstance(value, float):
                text = repr(value)
            else:
                text = str(value)
            pairs += [name, text]
        return pairs


@dataclass(frozen=True)
class _Sidecar:
    """Typed reads of a sidecar's fields, each failure a StateError naming the field."""

    doc: Mapping[str, Any]
    where: str

    def field(self, name: str, kinds: type | tuple[type, ...]) -> Any:
        if name not in self.doc:
            raise StateError(f"{self.where}: no {name!r}")
        value = self.doc[name]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise StateError(f"{self.where}: {name!r} is {value!r}")
        return value

    def choice(self, name: str, allowed: Sequence[str] | None) -> str:
        """A string among ``allowed`` (None: a solution id)."""
        value: str = self.field(name, str)
        if allowed is None and not SOLUTION_ID.match(value):
            raise StateError(f"{self.where}: {name} {value!r} is not a usable id")
        if allowed is not None and value not in allowed:
            raise StateError(f"{self.where}: {name} {value!r} is not one of {', '.join(allowed)}")
        return value

    def integer(self, name: str) -> int:
        return int(self.field(name, int))

    def number(self, name: str) -> float:
        value = float(self.field(name, (int, float)))
        if not math.isfinite(value):
            raise StateError(f"{self.where}: {name!r} is not finite")
        return value

    def integers(self, name: str) -> tuple[int, ...]:
        values = self.field(name, list)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise StateError(f"{self.where}: {name!r} holds a non-integer")
        return tuple(values)

    def strings(self, name: str) -> tuple[str, ...]:
        values = self.field(name, list)
        if not all(isinstance(v, str) for v in values):
            raise StateError(f"{self.where}: {name!r} holds a non-string")
        return tuple(values)

    def calibrator(self) -> str | None:
        value = self.doc.get("calibrator")
        if value is not None and not isinstance(value, str):
            raise StateError(f"{self.where}: 'calibrator' is {value!r}")
        return value


def _solution(solution_id: str, raw: Mapping[str, str]) -> CalSolution:
    try:
        return CalSolution(
            solution_id=solution_id,
            kind=raw["kind"],
            block_id=raw["block_id"],
            block_version=int(raw["block_version"]),
            set_ids=tuple(json.loads(raw["set_ids"])),
            valid_from_mjd=float(raw["valid_from_mjd"]),
            valid_to_mjd=float(raw["valid_to_mjd"]),
            calibrator=json.loads(raw["calibrator"]),
            reference_antenna=int(raw["reference_antenna"]),
            n_antennas=int(raw["n_antennas"]),
            flagged_antennas=tuple(json.loads(raw["flagged_antennas"])),
            snr_median=float(raw["snr_median"]),
            amp_scatter=float(raw["amp_scatter"]),
            phase_scatter_deg=float(raw["phase_scatter_deg"]),
            outlier_antennas=tuple(json.loads(raw["outlier_antennas"])),
            table=raw["table"],
            created_at=raw["created_at"],
            status=raw["status"],
            path=raw.get("path", ""),
            table_path=raw.get("table_path", ""),
            token=int(raw.get("token") or 0),
            registered_at=float(raw.get("registered_at") or 0),
            superseded_by=raw.get("superseded_by", ""),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise StateError(f"calibration solution {solution_id}: malformed ({exc})") from None


@dataclass(frozen=True)
class Resolution:
    """What applies at one time: the newest valid bandpass and gains covering it (or None)."""

    mjd: float
    bandpass: CalSolution | None
    gains: CalSolution | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mjd": self.mjd,
            "bandpass": self.bandpass.to_dict() if self.bandpass else None,
            "gains": self.gains.to_dict() if self.gains else None,
        }


@dataclass(frozen=True)
class CalibrationSummary:
    """The registry at a glance, for the metrics and the processor's health.

    ``bandpass_age_days`` is counted in **data time**: from the newest valid bandpass's
    calibrator transit (its ``valid_from_mjd``) to the end of the newest block a calibrate
    stage ran on, or, when no valid bandpass exists, from the start of the first such block.
    In live operation that is the bandpass's age; when old data is reprocessed it is still
    the span of data processed without a fresh bandpass, which wall-clock age would not be.
    None when no calibrate stage has run.
    """

    counts: dict[str, dict[str, int]]
    first_mjd: float | None
    last_mjd: float | None
    bandpass: CalSolution | None
    gains: CalSolution | None
    bandpass_covers_last: bool

    @property
    def bandpass_age_days(self) -> float | None:
        if self.last_mjd is None or self.first_mjd is None:
            return None
        since = self.bandpass.valid_from_mjd if self.bandpass else self.first_mjd
        return max(0.0, self.last_mjd - since)

    def to_metrics(self) -> dict[str, Any]:
        """The plain JSON a :class:`~dsa110d.metrics.ServiceMetrics` snapshot carries."""
        age = self.bandpass_age_days
        gains = self.gains
        return {
            "solutions": self.counts,
            "bandpass_age_sec": None if age is None else age * SECONDS_PER_DAY,
            "bandpass_valid": self.bandpass_covers_last,
            "bandpass_id": self.bandpass.solution_id if self.bandpass else None,
            "gains_id": gains.solution_id if gains else None,
            "gains_status": gains.effective_status if gains else None,
            "gains_amp_scatter": gains.amp_scatter if gains else None,
            "gains_phase_scatter_deg": gains.phase_scatter_deg if gains else None,
        }


def _newest_first(solution: CalSolution) -> tuple[float, float, str]:
    """Sort key (reversed): the latest validity start, then the latest registered, then the
    id, so that ties list the same way every time."""
    return solution.valid_from_mjd, solution.registered_at, solution.solution_id


class Calibrations:
    """The registry of calibration solutions on one server and namespace (module docstring)."""

    def __init__(self, redis: Redis, keys: Keys, target: str = "the state server") -> None:
        self.redis = redis
        self.keys = keys
        self.target = target
        self._register = lua.script(redis, "calibration_register")
        self._cover = lua.script(redis, "calibration_cover")

    # ------------------------------------------------------------------ the processor
    async def previous(self, block_id: str) -> dict[str, str]:
        """Kind -> the newest solution id the block's earlier runs registered. Read before the
        fenced commit: only the block's lease holder changes it, so it cannot move between."""
        with translate_errors(self.target):
            raw = await self.redis.hgetall(self.keys.cal_block(block_id))  # type: ignore[misc]
        return {str(k): str(v) for k, v in raw.items()}

    def stage_register(
        self,
        pipe: Pipeline,
        solutions: Sequence[CalSolution],
        previous: Mapping[str, str],
        token: int,
        span_mjd: tuple[float, float] | None = None,
        now: float | None = None,
    ) -> None:
        """Queue on the block's fenced transaction: register ``solutions`` (an id already
        registered changes nothing) and, with ``span_mjd`` (the block's span, MJD), widen the
        coverage of calibrated data."""
        now = time.time() if now is None else now
        for solution in solutions:
            registered = CalSolution(
                **{**asdict(solution), "token": token, "registered_at": now, "superseded_by": ""}
            )
            prior = previous.get(solution.kind, "")
            own = self.keys.cal_solution(solution.solution_id)
            lua.queue(
                pipe,
                self._register,
                [
                    own,
                    self.keys.cal_index(solution.kind),
                    self.keys.cal_counts(),
                    self.keys.cal_block(solution.block_id),
                    self.keys.cal_solution(prior) if prior else own,
                ],
                [
                    solution.solution_id,
                    solution.kind,
                    solution.status,
                    repr(solution.valid_from_mjd),
                    str(solution.block_version),
                    prior,
                    *registered._fields(),
                ],
            )
        if span_mjd is not None:
            first, last = (repr(mjd) for mjd in span_mjd)
            lua.queue(pipe, self._cover, [self.keys.cal_coverage()], [first, last])

    async def forget_blocks(self, block_ids: Sequence[str]) -> int:
        """Drop the per-block ``kind -> newest id`` of blocks whose record is gone (pruned by
        housekeeping); the solutions themselves stay: they are the record of what calibrated
        the published data. Returns how many were dropped."""
        if not block_ids:
            return 0
        with translate_errors(self.target):
            async with self.redis.pipeline(transaction=False) as pipe:
                for block_id in block_ids:
                    pipe.exists(self.keys.block_record(block_id))
                present = list(await pipe.execute())
            gone = [b for b, there in zip(block_ids, present, strict=True) if not there]
            if not gone:
                return 0
            return int(await self.redis.delete(*(self.keys.cal_block(b) for b in gone)))

    # ------------------------------------------------------------------ readers
    async def solution(self, solution_id: str) -> CalSolution | None:
        with translate_errors(self.target):
            raw = await self.redis.hgetall(self.keys.cal_solution(solution_id))  # type: ignore[misc]
        return _solution(solution_id, raw) if raw else None

    async def solutions(
        self, kind: str | None = None, status: str | None = None, limit: int = 0
    ) -> list[CalSolution]:
        """Solutions newest first (by the start of their validity), of ``kind`` (both when
        None), only those whose effective status is ``status``; at most ``limit`` (0: all)."""
        kinds = KINDS if kind is None else (kind,)
        found: list[CalSolution] = []
        for one in kinds:
            found += await self._newest(one, 0 if status else limit)
        found.sort(key=_newest_first, reverse=True)
        if status is not None:
            found = [s for s in found if s.effective_status == status]
        return found[:limit] if limit else found

    async def _newest(
        self, kind: str, limit: int, until_mjd: float | None = None
    ) -> list[CalSolution]:
        """Solutions of ``kind`` newest first, starting by ``until_mjd``; ``limit`` 0: all."""
        high: float | str = "+inf" if until_mjd is None else until_mjd
        with translate_errors(self.target):
            found = await self.redis.zrevrangebyscore(
                self.keys.cal_index(kind), high, "-inf", start=0 if limit else None,
                num=limit or None,
            )  # fmt: skip
            ids = [str(i) for i in found]
            if not ids:
                return []
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hgetall(self.keys.cal_solution(i))
                raws = list(await pipe.execute())
        return [_solution(i, r) for i, r in zip(ids, raws, strict=True) if r]

    async def newest_valid(self, kind: str, mjd: float | None = None) -> CalSolution | None:
        """The newest valid solution of ``kind``; with ``mjd``, the newest covering it."""
        candidates = await self._newest(kind, SCAN_LIMIT, mjd)
        candidates.sort(key=_newest_first, reverse=True)
        for solution in candidates:
            if solution.valid and (mjd is None or solution.covers(mjd)):
                return solution
        return None

    async def resolve(self, mjd: float) -> Resolution:
        """What applies at ``mjd``: the newest valid bandpass and gains whose validity covers
        it (None for a kind with none)."""
        return Resolution(
            mjd, await self.newest_valid("bandpass", mjd), await self.newest_valid("gains", mjd)
        )

    async def counts(self) -> dict[str, dict[str, int]]:
        """Kind -> status -> how many solutions (every kind and status, zeros included)."""
        with translate_errors(self.target):
            raw = await self.redis.hgetall(self.keys.cal_counts())  # type: ignore[misc]
        counts = {kind: dict.fromkeys(STATUSES, 0) for kind in KINDS}
        for field, value in raw.items():
            kind, _, status = str(field).partition(":")
            if kind in counts and status in counts[kind]:
                counts[kind][status] = int(value)
        return counts

    async def coverage(self) -> tuple[float, float] | None:
        """(first, last) MJD of the blocks a calibrate stage has run on; None before any."""
        with translate_errors(self.target):
            raw = await self.redis.hgetall(self.keys.cal_coverage())  # type: ignore[misc]
        try:
            return float(raw["first_mjd"]), float(raw["last_mjd"])
        except (KeyError, ValueError):
            return None

    async def summary(self) -> CalibrationSummary:
        span = await self.coverage()
        bandpass = await self.newest_valid("bandpass")
        newest = [g for g in await self._newest("gains", 8) if not g.superseded_by]
        covering = await self.newest_valid("bandpass", span[1]) if span else None
        return CalibrationSummary(
            counts=await self.counts(),
            first_mjd=span[0] if span else None,
            last_mjd=span[1] if span else None,
            bandpass=bandpass,
            gains=newest[0] if newest else None,
            bandpass_covers_last=covering is not None,
        )
