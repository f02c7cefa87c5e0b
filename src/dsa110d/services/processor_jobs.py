"""The MS processor's jobs as they run in worker processes: plain JSON in, plain JSON out.

Thin wrappers over ``science``: :func:`convert_job` (``conversion.convert.convert_set``
plus the chunk's span from ``pipeline.chunkinfo``) and :func:`block_job` (the configured stages
of ``pipeline.stages`` on one block, with every output written under a private staging directory
that :func:`publish_outputs` later moves into ``paths.results_dir`` under names that carry the
run's version and fencing token). A worker imports this module, and so the heavy libraries, once.

A job cancelled by the daemon (``processing_timeout_sec``, shutdown) has its worker killed
with SIGKILL. The converter writes in forked children; :func:`_children_die_with_worker`
makes every process forked in a worker die with its parent (Linux ``PR_SET_PDEATHSIG``), so
a killed conversion leaves no orphan writing on.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dsa110d.config import Config
from dsa110d.errors import StageError, WorkerJobError
from dsa110d.science.pipeline.blocks import BlockPlan
from dsa110d.science.pipeline.flagqa import flag_columns
from dsa110d.workers import die_with_parent

# The heavy science modules (casacore, pyuvdata, pandas) are imported inside the jobs, so
# that the daemon can name these functions without importing them; the workers import them
# once at start-up (MSProcessorService.worker_modules).

SCRATCH_NAME = ".scratch"
"""The stages' scratch directory inside a block's staging directory (never published)."""

_armed = False
_parent_pid = 0


EXTERNAL_PROGRAMS = {"image": "wsclean"}
"""Stages that run a program outside the daemon, and the program: each such stage runs in a
worker call of its own through the program's circuit breaker. While the breaker is open the
stage is skipped (reported ``skipped`` with the reason) instead of failing every block."""
BREAKER_COUNTED = (StageError, WorkerJobError)
"""Failures of an external stage that count against its program's breaker."""


def stage_segments(stages: list[str]) -> list[tuple[list[str], str | None]]:
    """The stages in order, cut into worker calls: runs of in-process stages (program None)
    and each stage that runs an external program on its own, with the program's name."""
    segments: list[tuple[list[str], str | None]] = []
    for name in stages:
        program = EXTERNAL_PROGRAMS.get(name)
        if program is None and segments and segments[-1][1] is None:
            segments[-1][0].append(name)
        else:
            segments.append(([name], program))
    return segments


def _remember_parent() -> None:
    global _parent_pid
    _parent_pid = os.getpid()


def _die_with_parent() -> None:
    die_with_parent(_parent_pid)


def _children_die_with_worker() -> None:
    """Every process forked from here on gets SIGKILL when its parent dies (Linux only)."""
    global _armed
    if _armed or not sys.platform.startswith("linux"):
        return
    os.register_at_fork(before=_remember_parent, after_in_child=_die_with_parent)
    _armed = True


@dataclass(frozen=True)
class Converted:
    """What a conversion job did: the MS, whether it was already there, the chunk's span
    (Unix s) and declination (rad), how long it took and the subbands it lacked. It crosses
    the worker boundary as JSON (:meth:`to_json`, :meth:`from_json`)."""

    ms: str
    reused: bool
    start: float
    end: float
    dec_rad: float
    seconds: float
    missing_subbands: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "missing_subbands": list(self.missing_subbands)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Converted:
        return cls(**{**doc, "missing_subbands": tuple(doc.get("missing_subbands", ()))})


@dataclass(frozen=True)
class StageRun:
    """One stage's result from a block job, its outputs relative to the staging directory."""

    stage: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StageRun:
        return cls(**doc)


def convert_job(files: list[str], out: str, partial: bool) -> dict[str, Any]:
    """Convert one set into ``out`` and describe the chunk (span in Unix s, dec in rad)."""
    from dsa110d.science.conversion.convert import convert_set
    from dsa110d.science.pipeline.chunkinfo import chunk_info

    _children_die_with_worker()
    remove_temporaries(Path(out))
    result = convert_set([Path(f) for f in files], Path(out), partial=partial)
    info = chunk_info(result.ms)
    return Converted(
        str(result.ms), result.reused, info.start, info.end, info.dec_rad, result.seconds,
        tuple(result.missing_subbands),
    ).to_json()  # fmt: skip


def remove_temporaries(out: Path) -> None:
    """Temporary siblings of ``out`` left by a conversion that was killed (a crash, SIGKILL,
    a timeout): the caller holds the set's lease, so no live writer owns them."""
    from dsa110d.science.atomic import TEMP_PREFIX

    if out.parent.is_dir():
        for leftover in out.parent.glob(f"{TEMP_PREFIX}{out.name}.*"):
            shutil.rmtree(leftover, ignore_errors=True)


def staged_config(config_doc: dict[str, Any], staging: Path) -> Config:
    """The daemon's config (sent without its redis section) with results going to staging."""
    config = Config.model_validate(config_doc)
    paths = config.paths.model_copy(update={"results_dir": staging})
    return config.model_copy(update={"paths": paths})


def block_job(
    config_doc: dict[str, Any],
    block_id: str,
    version: int,
    missing_slots: list[int],
    ms_paths: list[str],
    staging: str,
    stages: list[str] | None = None,
    monitored: list[list[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Run the configured stages (or only ``stages``, in that order) on one block; outputs
    under ``staging``; their results. ``monitored``: the monitored new sources
    (``MonitoredSource.to_json`` each) for forced photometry."""
    from dsa110d.science.imaging.monitoring import MonitoredSource
    from dsa110d.science.pipeline.stage import BlockJob
    from dsa110d.science.pipeline.stages import build_pipeline, run_pipeline

    _children_die_with_worker()
    root = Path(staging)
    root.mkdir(parents=True, exist_ok=True)
    config = staged_config(config_doc, root)
    if stages is not None:
        pipeline = config.pipeline.model_copy(update={"stages": stages})
        config = config.model_copy(update={"pipeline": pipeline})
    block = BlockPlan.from_config(config.services.ms_processor).block_by_id(block_id)
    watch = tuple(MonitoredSource.from_json(m) for m in monitored or ())
    job = BlockJob(block, version, tuple(missing_slots), watch)
    scratch = root / SCRATCH_NAME
    try:
        results = run_pipeline(
            build_pipeline(config), job, [Path(p) for p in ms_paths], config, scratch
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [
        StageRun(
            r.stage,
            r.status,
            {kind: str(Path(p).relative_to(root)) for kind, p in r.outputs.items()},
            dict(r.summary),
            r.message,
        ).to_json()
        for r in results
    ]


def flag_fraction(stages: list[dict[str, Any]]) -> float | None:
    """The flag stage's flag fraction from a block run's stage results (None: no flag stage,
    or its MSs were flagged before)."""
    return flag_columns({str(r.get("stage")): r.get("summary") or {} for r in stages})[0]


def bad_antennas(stages: list[dict[str, Any]]) -> int | None:
    """How many antennas the flag stage of a block run found bad (None: no such stage)."""
    for result in stages:
        if result.get("stage") == "flag":
            return len(flag_columns({"flag": result.get("summary") or {}})[1])
    return None


def publish_outputs(
    staging: Path, results_dir: Path, outputs: dict[str, str], version: int, token: int
) -> dict[str, str]:
    """Move staged outputs (kind -> path relative to staging) to the same place under
    ``results_dir``, named for this run (``atomic.fenced_name``: version and fencing token),
    each with one atomic rename, made durable before the block is recorded as processed (a power
    cut cannot leave the record naming data that never reached the disk); returns kind -> final
    path.

    The names are this holder's alone, so publishing never replaces another holder's file;
    what makes them the block's results is the record naming them, written in the fenced
    transaction afterwards (``Leases.run_fenced``).
    """
    from dsa110d.science.atomic import fenced_name, publish

    finals: dict[str, str] = {}
    for kind, relative in outputs.items():
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise ValueError(f"staged output {relative!r} is not inside the staging directory")
        source = staging / relative
        final = fenced_name(results_dir / relative, version, token)
        final.parent.mkdir(parents=True, exist_ok=True)
        publish(source, final)
        finals[kind] = str(final)
    return finals


def remove_outputs(finals: dict[str, str]) -> None:
    """Take back what :func:`publish_outputs` published: its holder was superseded before
    the record could name the files (no one else ever writes these names)."""
    for path in finals.values():
        _remove(Path(path))


def _remove(path: Path) -> None:
    """Remove a published output: a file, or a tree (a calibration table is a directory)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_superseded(finals: dict[str, str], token: int) -> list[str]:
    """After the commit of ``token``: remove the files of the same outputs published under
    an older token (``atomic.superseded_outputs``). Returns the paths removed."""
    from dsa110d.science.atomic import superseded_outputs

    removed = superseded_outputs([Path(p) for p in finals.values()], token)
    for path in removed:
        _remove(path)
    return [str(p) for p in removed]
