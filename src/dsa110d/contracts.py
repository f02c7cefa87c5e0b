"""What each message's payload holds: one frozen dataclass per kind, and the consumer groups.

:mod:`dsa110d.messages` owns the envelope and leaves the payload to its type; this module owns
the payloads. Producers build a contract and send ``to_payload()``; consumers call
``from_payload(payload, ident)``, which checks every field and raises
:class:`~dsa110d.errors.MessageError` with one line naming the message and the field, so a
malformed entry goes to the dead letters with that line. ``paths()`` lists every file path a
payload names, which consumers check against the data roots before touching any of them.

=======================  ====================  ==========================================
payload                  stream                consumers (group)
=======================  ====================  ==========================================
:class:`SetAnnounced`    HDF5_PROCESSING       processor (:data:`PROCESSOR_GROUP`)
:class:`ChunkConverted`  MS_PROCESSING         processor, analyzer (:data:`ANALYZER_GROUP`)
:class:`BlockProcessed`  MS_PROCESSING         processor, analyzer
:class:`AnalysisRun`     VARIABILITY_ANALYSIS  analyzer (its own record; operators read it)
=======================  ====================  ==========================================
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dsa110d.errors import MessageError

if TYPE_CHECKING:
    from dsa110d.messages import Message

SET_ID_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
"""A set id is the set's start time (``science.hdf5.subbands.set_id_from_time``); it names the MS
and a lease, so anything else (``..``, slashes) is refused."""


def set_id_of(message: Message) -> str:
    """The payload's set id, checked (MessageError otherwise)."""
    set_id = message.payload.get("set_id")
    if not isinstance(set_id, str) or not SET_ID_PATTERN.match(set_id):
        raise MessageError(f"message {message.id}: payload.set_id {set_id!r} is not a set id")
    return set_id


PROCESSOR_GROUP = "processor"
"""The processor's consumer group on HDF5_PROCESSING and on MS_PROCESSING."""
ANALYZER_GROUP = "analyzer"
"""The analyzer's consumer group on MS_PROCESSING and VARIABILITY_ANALYSIS."""
FAST_ALERTS_GROUP = "fast_alerts"
"""The processor's fast-alert search's consumer group on MS_PROCESSING (its chunk messages)."""

JsonObject = dict[str, Any]


class MsKind(enum.StrEnum):
    """The two kinds of MS_PROCESSING message (``payload.kind``)."""

    CHUNK = "chunk"
    BLOCK = "block"


class RunStatus(enum.StrEnum):
    """How a variability analysis run ended (its record, its message, the queue's outlook)."""

    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    LEASE_LOST = "lease_lost"


# --- field readers: each fault is one line naming the message and the field ---------------


def _field(payload: Mapping[str, Any], name: str, ident: str) -> Any:
    if name not in payload:
        raise MessageError(f"message {ident}: payload.{name} is missing")
    return payload[name]


def _str(payload: Mapping[str, Any], name: str, ident: str) -> str:
    value = _field(payload, name, ident)
    if not isinstance(value, str) or not value:
        raise MessageError(f"message {ident}: payload.{name} must be a non-empty string")
    return value


def _int(value: Any, name: str, ident: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MessageError(f"message {ident}: payload.{name} must be an integer")
    return value


def _float(value: Any, name: str, ident: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise MessageError(f"message {ident}: payload.{name} must be a finite number")
    return float(value)


def _optional_float(payload: Mapping[str, Any], name: str, ident: str) -> float | None:
    value = payload.get(name)
    return None if value is None else _float(value, name, ident)


def _list(payload: Mapping[str, Any], name: str, ident: str, default: Any = None) -> list[Any]:
    value = payload.get(name, default) if default is not None else _field(payload, name, ident)
    if not isinstance(value, list):
        raise MessageError(f"message {ident}: payload.{name} must be a list")
    return value


def _strings(payload: Mapping[str, Any], name: str, ident: str) -> tuple[str, ...]:
    values = _list(payload, name, ident, default=[])
    if not all(isinstance(v, str) and v for v in values):
        raise MessageError(f"message {ident}: payload.{name} must be a list of non-empty strings")
    return tuple(values)


# --- HDF5_PROCESSING -----------------------------------------------------------------------


@dataclass(frozen=True)
class SetAnnounced:
    """A subband set ready for conversion: its files by subband (absolute paths), the
    subbands missing from it (flagged channels when ``partial``)."""

    set_id: str
    files: tuple[tuple[int, str], ...]
    """(subband, path) in subband order."""
    time0_jd: float | None
    dec_rad: float | None
    expected_subbands: int
    partial: bool

    @classmethod
    def of(
        cls,
        set_id: str,
        files: Mapping[int, str],
        time0_jd: float | None,
        dec_rad: float | None,
        expected: int,
        partial: bool,
    ) -> SetAnnounced:
        return cls(set_id, tuple(sorted(files.items())), time0_jd, dec_rad, expected, partial)

    @property
    def missing_subbands(self) -> tuple[int, ...]:
        present = {sb for sb, _ in self.files}
        return tuple(sb for sb in range(self.expected_subbands) if sb not in present)

    def paths(self) -> tuple[str, ...]:
        return tuple(path for _, path in self.files)

    def to_payload(self) -> JsonObject:
        return {
            "set_id": self.set_id,
            "files": [{"subband": sb, "path": path} for sb, path in self.files],
            "time0_jd": self.time0_jd,
            "dec_rad": self.dec_rad,
            "expected_subbands": self.expected_subbands,
            "missing_subbands": list(self.missing_subbands),
            "partial": self.partial,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], ident: str) -> SetAnnounced:
        files = []
        for entry in _list(payload, "files", ident):
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise MessageError(
                    f"message {ident}: payload.files entries must be {{subband, path}} objects"
                )
            files.append((_int(entry.get("subband"), "files[].subband", ident), entry["path"]))
        expected = payload.get("expected_subbands", len(files))
        return cls(
            set_id=_str(payload, "set_id", ident),
            files=tuple(sorted(files)),
            time0_jd=_optional_float(payload, "time0_jd", ident),
            dec_rad=_optional_float(payload, "dec_rad", ident),
            expected_subbands=_int(expected, "expected_subbands", ident),
            partial=bool(payload.get("partial", False)),
        )


# --- MS_PROCESSING -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkConverted:
    """One set converted into one Measurement Set (a chunk), and the blocks it falls in."""

    set_id: str
    chunk_id: str
    ms_path: str
    start: float
    end: float
    dec_rad: float
    blocks: tuple[str, ...] = ()

    kind = MsKind.CHUNK

    def paths(self) -> tuple[str, ...]:
        return (self.ms_path,)

    def to_payload(self) -> JsonObject:
        return {
            "kind": self.kind.value,
            "set_id": self.set_id,
            "chunk_id": self.chunk_id,
            "ms_path": self.ms_path,
            "start": self.start,
            "end": self.end,
            "dec_rad": self.dec_rad,
            "blocks": list(self.blocks),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], ident: str) -> ChunkConverted:
        return cls(
            set_id=_str(payload, "set_id", ident),
            chunk_id=_str(payload, "chunk_id", ident),
            ms_path=_str(payload, "ms_path", ident),
            start=_float(_field(payload, "start", ident), "start", ident),
            end=_float(_field(payload, "end", ident), "end", ident),
            dec_rad=_float(_field(payload, "dec_rad", ident), "dec_rad", ident),
            blocks=_strings(payload, "blocks", ident),
        )


@dataclass(frozen=True)
class BlockProcessed:
    """One committed run of a block's pipeline: its outputs by kind and its chunks' MSs."""

    block_id: str
    version: int
    results: Mapping[str, str]
    """Output kind -> path (``photometry``, ``image``...)."""
    ms_paths: tuple[str, ...]
    chunks: tuple[str, ...]
    missing_slots: tuple[int, ...]
    start: float
    end: float

    kind = MsKind.BLOCK

    def paths(self) -> tuple[str, ...]:
        return (*self.results.values(), *self.ms_paths)

    def to_payload(self) -> JsonObject:
        return {
            "kind": self.kind.value,
            "block_id": self.block_id,
            "version": self.version,
            "results": dict(self.results),
            "ms_paths": list(self.ms_paths),
            "chunks": list(self.chunks),
            "missing_slots": list(self.missing_slots),
            "start": self.start,
            "end": self.end,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], ident: str) -> BlockProcessed:
        results = payload.get("results", {})
        if not isinstance(results, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in results.items()
        ):
            raise MessageError(f"message {ident}: payload.results must map kinds to paths")
        slots = _list(payload, "missing_slots", ident, default=[])
        return cls(
            block_id=_str(payload, "block_id", ident),
            version=_int(payload.get("version", 1), "version", ident),
            results=results,
            ms_paths=_strings(payload, "ms_paths", ident),
            chunks=_strings(payload, "chunks", ident),
            missing_slots=tuple(_int(s, "missing_slots[]", ident) for s in slots),
            start=_float(_field(payload, "start", ident), "start", ident),
            end=_float(_field(payload, "end", ident), "end", ident),
        )


def ms_message(payload: Mapping[str, Any], ident: str) -> ChunkConverted | BlockProcessed:
    """The MS_PROCESSING payload as its contract, by ``payload.kind``."""
    kind = payload.get("kind")
    if kind == MsKind.CHUNK:
        return ChunkConverted.from_payload(payload, ident)
    if kind == MsKind.BLOCK:
        return BlockProcessed.from_payload(payload, ident)
    raise MessageError(f"message {ident}: payload.kind {kind!r} is not chunk/block")


# --- VARIABILITY_ANALYSIS ------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisRun:
    """What one variability analysis run did (the run's summary, not its tables)."""

    status: RunStatus
    run_time: str
    seconds: float
    error: str = ""
    full: bool = False
    n_blocks_noted: int = 0
    blocks: tuple[str, ...] = ()
    """The first block ids noted for this run (the count is ``n_blocks_noted``)."""
    summary: Mapping[str, Any] = field(default_factory=dict)
    run: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def paths(self) -> tuple[str, ...]:
        return tuple(v for v in self.outputs.values() if isinstance(v, str))

    def to_payload(self) -> JsonObject:
        doc: JsonObject = {
            "status": self.status.value,
            "run_time": self.run_time,
            "seconds": self.seconds,
            "error": self.error,
            "full": self.full,
            "n_blocks_noted": self.n_blocks_noted,
            "blocks": list(self.blocks),
        }
        if self.summary or self.run or self.outputs:
            doc.update(summary=dict(self.summary), run=dict(self.run), outputs=dict(self.outputs))
        return doc

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], ident: str) -> AnalysisRun:
        try:
            status = RunStatus(_str(payload, "status", ident))
        except ValueError:
            raise MessageError(f"message {ident}: payload.status is not a run status") from None
        parts = {}
        for name in ("summary", "run", "outputs"):
            value = payload.get(name, {})
            if not isinstance(value, dict):
                raise MessageError(f"message {ident}: payload.{name} must be an object")
            parts[name] = value
        return cls(
            status=status,
            run_time=_str(payload, "run_time", ident),
            seconds=_float(payload.get("seconds", 0.0), "seconds", ident),
            error=str(payload.get("error", "")),
            full=bool(payload.get("full", False)),
            n_blocks_noted=_int(payload.get("n_blocks_noted", 0), "n_blocks_noted", ident),
            blocks=_strings(payload, "blocks", ident),
            **parts,
        )


__all__ = [
    "ANALYZER_GROUP",
    "FAST_ALERTS_GROUP",
    "PROCESSOR_GROUP",
    "AnalysisRun",
    "BlockProcessed",
    "ChunkConverted",
    "MsKind",
    "RunStatus",
    "SetAnnounced",
    "ms_message",
]
