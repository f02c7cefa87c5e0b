"""``dsa110ctl sets``, ``blocks`` and ``candidates``: the pipeline's records, as the services
keep them.

Sets come from the watcher's set records (:mod:`dsa110d.state.sets`), chunks and blocks from
the processor's (:mod:`dsa110d.state.blocks`), candidates from the analyzer's latest run
(:mod:`dsa110d.state.candidates`: Redis, else the results file), new sources from the blind
search's monitored list (:mod:`dsa110d.state.monitored`: first-detection block, the earlier
mosaics' values and limits, the blocks re-run to measure them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsa110d.config import Config
from dsa110d.errors import ConfigError
from dsa110d.operations.session import open_state
from dsa110d.science.pipeline.flagqa import flag_columns
from dsa110d.state.blocks import BlockRecord, Blocks, BlockState
from dsa110d.state.candidates import CandidateReport, fetch_candidates
from dsa110d.state.connection import describe_target
from dsa110d.state.keys import Keys
from dsa110d.state.monitored import Decoded, MonitoredSources
from dsa110d.state.sets import SetRecord, Sets, SetState

SET_STATES: tuple[str, ...] = tuple(s.value for s in SetState)
BLOCK_STATES: tuple[str, ...] = tuple(s.value for s in BlockState)
CANDIDATE_CLASSES = ("transient", "variable")
"""science.variability.metrics' CLASS_TRANSIENT and CLASS_VARIABLE, spelt out so that dsa110ctl
does not import the science stack (pandas, scipy: seconds) to start; a test pins them equal."""


@dataclass(frozen=True)
class SetRow:
    """One set as ``dsa110ctl sets`` shows it."""

    set_id: str
    state: str
    subbands: int
    expected: int
    missing: list[int]
    partial: bool
    attempts: int
    errors: int
    last_error: str
    first_seen: float
    last_seen: float
    message_id: str

    @classmethod
    def from_record(cls, record: SetRecord) -> SetRow:
        last = record.errors[-1] if record.errors else None
        return cls(
            set_id=record.set_id,
            state=record.state.value,
            subbands=len(record.files),
            expected=record.expected,
            missing=record.missing,
            partial=record.partial,
            attempts=record.attempts,
            errors=len(record.errors),
            last_error=f"{last.kind}: {last.reason}" if last else "",
            first_seen=record.first_seen,
            last_seen=record.last_seen,
            message_id=record.message_id,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_set_state(state: str | None) -> SetState | None:
    if state is None:
        return None
    if state not in SET_STATES:
        raise ConfigError(f"--state: {state!r} is not one of {', '.join(SET_STATES)}")
    return SetState(state)


async def list_sets(config: Config, state: str | None = None, limit: int = 0) -> list[SetRow]:
    """Sets oldest first (by file-name time), only those in ``state``; the newest ``limit``
    (0: all)."""
    wanted = check_set_state(state)
    async with open_state(config) as redis:
        sets = Sets(redis, Keys(config.redis.namespace), describe_target(config))
        records = await sets.list(wanted, limit)
    return [SetRow.from_record(r) for r in records]


async def newest_set_ids(config: Config, limit: int) -> list[str]:
    """The ids of the newest ``limit`` sets, oldest first (no records read: cheap)."""
    async with open_state(config) as redis:
        sets = Sets(redis, Keys(config.redis.namespace), describe_target(config))
        return await sets.ids(limit)


async def latest_candidates(config: Config, kind: str | None = None) -> CandidateReport | None:
    """The newest analysis run's candidates, best first (only ``kind``: transient or
    variable); None when no run has produced any."""
    report = await fetch_candidates(config)
    if report is None or kind is None:
        return report
    kept = [c for c in report.candidates if c.get("class") == kind]
    return CandidateReport(report.run, kept, report.source)


def _listable(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` unchanged if ``dsa110ctl candidates --new`` can show it: an id, a position,
    lists of earlier limits (each with a limit) and re-run blocks; else ``KeyError``,
    ``ValueError`` or ``TypeError`` (the entry is then named as unreadable)."""
    str(record["candidate_id"])
    float(record["ra_deg"])
    float(record["dec_deg"])
    for field in ("earlier_upper_limits", "rerun_blocks"):
        if not isinstance(record.get(field) or [], list):
            raise TypeError(f"{field} is not a list")
    for earlier in record.get("earlier_upper_limits") or []:
        float(earlier["limit_jy"])
    return record


async def new_sources(config: Config) -> Decoded[dict[str, Any]]:
    """The monitored new sources (blind detections no catalog knew), first detected first,
    and the entries too damaged to show, by candidate id."""
    async with open_state(config) as redis:
        found = await MonitoredSources(redis, Keys(config.redis.namespace)).decoded(_listable)
    found.sources.sort(key=lambda r: (str(r.get("first_block")), str(r["candidate_id"])))
    return found


@dataclass(frozen=True)
class BlockRow:
    """One block as ``dsa110ctl blocks`` shows it."""

    block_id: str
    state: str
    start: float
    end: float
    version: int
    chunks: int
    missing_slots: list[int]
    stale: bool
    attempts: int
    error: str
    processed_at: float
    results: dict[str, str]
    qa: dict[str, Any]

    @classmethod
    def from_record(cls, record: BlockRecord) -> BlockRow:
        return cls(
            block_id=record.block_id,
            state=record.state.value,
            start=record.start,
            end=record.end,
            version=record.version,
            chunks=len(record.chunks),
            missing_slots=list(record.missing_slots),
            stale=record.stale,
            attempts=record.attempts,
            error=record.error,
            processed_at=record.processed_at,
            results=dict(record.results),
            qa=dict(record.qa),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def flag_fraction(self) -> float | None:
        """The flagged fraction of the last run's flag stage (None: none ran)."""
        return flag_columns(self.qa)[0]

    @property
    def bad_antennas(self) -> list[str]:
        """The antennas the last run's flag stage found bad, by name."""
        return flag_columns(self.qa)[1]


async def list_blocks(config: Config, state: str | None = None, limit: int = 0) -> list[BlockRow]:
    """Blocks oldest first (by start), only those in ``state``; the newest ``limit`` (0: all)."""
    if state is not None and state not in BLOCK_STATES:
        raise ConfigError(f"--state: {state!r} is not one of {', '.join(BLOCK_STATES)}")
    async with open_state(config) as redis:
        blocks = Blocks(redis, Keys(config.redis.namespace), describe_target(config))
        records = await blocks.blocks(state, limit)
    return [BlockRow.from_record(r) for r in records]
