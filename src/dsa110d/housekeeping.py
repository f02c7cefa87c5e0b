"""Housekeeping: keep state and scratch from piling up for months.

One pass removes what is past its retention (``housekeeping.*``, ``streams.retention_sec``):
set records whose input files have left ``incoming_dir`` (moved by post_handle or removed by
the operator: a set whose files are still there keeps its record, else a restarted watcher
would announce it again); chunk and block records (by when recorded; never a pending block;
a pruned block's calibration index goes with it, its solutions stay);
acked stream entries (and, on a stream no group reads, old ones); dead letters; resolved
alerts and alert events; stale registry entries and long-gone stream consumers; and what a
crash left in the data directories: temporary outputs (``.tmp-*`` from
:func:`dsa110d.science.atomic.temp_sibling`) in ``ms_dir`` and ``results_dir``, and block
staging directories (``results_dir/.staging/*``, with the stages' ``.scratch`` inside) whose
newest file is older than :func:`leftover_age_sec` (``temp_grace_sec``, but at least
``LEFTOVER_TIMEOUT_FACTOR`` times the longest job timeout: a job past its timeout has been
killed and its own cleanup has run, so nothing that old is still being written). It never
removes a complete output (a directory with the completion marker, even under a temporary
name), never anything under ``incoming_dir`` or ``processed_dir`` (inputs), nothing outside
``ms_dir`` and ``results_dir``, and never follows symlinks. It also removes a processed block's
output files of tokens older than the committed run's (:func:`superseded_block_outputs`: left
when a holder died between its commit and its own clean-up).

The daemon runs a pass every ``housekeeping.interval_sec`` on one host at a time: the pass
holds the ``housekeeping`` lease and claims the interval in Redis, so N daemons run it once.
``dsa110ctl housekeeping [--dry-run]`` runs the same pass by hand.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from dsa110d.config import Config
from dsa110d.errors import LeaseHeldError, PathOutsideRootsError, StateError, describe
from dsa110d.logs import get_logger
from dsa110d.paths import inside_roots
from dsa110d.science.atomic import (
    STAGING_DIR,
    is_complete_dir,
    is_temporary,
    superseded_outputs,
    unfenced,
)
from dsa110d.science.constants import SECONDS_PER_DAY
from dsa110d.state import housekeeping as state_hk
from dsa110d.state.calibration import Calibrations
from dsa110d.state.connection import Redis, describe_target
from dsa110d.state.housekeeping import Removal
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases

log = get_logger("dsa110d.housekeeping")
LEASE_NAME = "housekeeping"
CHECK_EVERY_SEC = 60.0  # how often a daemon looks whether a pass is due
LEFTOVER_TIMEOUT_FACTOR = 4.0
"""A crash leftover is at least this many job timeouts old (processing_timeout_sec of the
processor, analysis_timeout_sec of the analyzer) before housekeeping removes it."""


@dataclass
class Report:
    """What one pass removed (or, in a dry run, would remove)."""

    dry_run: bool
    removals: list[Removal] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for r in self.removals:
            totals[r.kind] = totals.get(r.kind, 0) + r.count
        return totals


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def leftover_age_sec(config: Config) -> float:
    """How old (newest file) a crash leftover must be to go: ``temp_grace_sec``, and well past
    the longest a job may run (a job past its timeout is killed and cleans up after itself)."""
    services = config.services
    longest_job = max(
        services.ms_processor.processing_timeout_sec,
        services.variability_analyzer.analysis_timeout_sec,
    )
    return max(config.housekeeping.temp_grace_sec, LEFTOVER_TIMEOUT_FACTOR * longest_job)


def stale_leftovers(config: Config, now: float) -> list[Removal]:
    """Crash leftovers under ms_dir and results_dir older than :func:`leftover_age_sec`:
    temporaries anywhere, and each block staging directory as a whole."""
    paths = config.paths
    inputs = [p.resolve() for p in (paths.incoming_dir, paths.processed_dir)]
    max_age = leftover_age_sec(config)
    staging = paths.results_dir.resolve() / STAGING_DIR
    found = []
    for root in dict.fromkeys(p.resolve() for p in (paths.ms_dir, paths.results_dir)):
        if not root.is_dir() or _inside(root, inputs):
            continue
        for directory, subdirs, files in os.walk(root):
            keep = []
            for name in [*subdirs, *files]:
                path, is_dir = Path(directory) / name, name in subdirs
                removals, descend = _leftover(path, is_dir, inputs, staging, now, max_age)
                found += removals
                if descend:
                    keep.append(name)
            subdirs[:] = keep  # descend only into plain directories
    return found


def _leftover(
    path: Path, is_dir: bool, inputs: list[Path], staging: Path, now: float, max_age: float
) -> tuple[list[Removal], bool]:
    """What to remove at ``path`` and whether to look inside it."""
    if _inside(path, inputs) or path.is_symlink():
        return [], False
    if path == staging:
        return (_stale_staging(path, now, max_age) if is_dir else []), False
    if is_dir and is_complete_dir(path):
        return [], False  # a complete output (maybe awaiting its rename): never removed
    if is_temporary(path):
        age = now - _last_change(path)
        return ([Removal("temporary", str(path), 1, age)] if age > max_age else []), False
    return [], is_dir


def _stale_staging(staging: Path, now: float, max_age: float) -> list[Removal]:
    """The block staging directories (and stray files) under ``staging`` past ``max_age``."""
    found = []
    for entry in sorted(os.scandir(staging), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.is_symlink():
            continue
        age = now - _last_change(path)
        if age > max_age:
            found.append(Removal("staging", str(path), 1, age))
    return found


def _last_change(path: Path) -> float:
    """Newest mtime of a leftover and everything in it (a writer still at work touches its
    files, not always the directories above them). Symlinks are not followed. Anything that
    vanishes or cannot be read meanwhile makes it count as new: kept."""
    try:
        stamps = [path.lstat().st_mtime]
        if path.is_dir() and not path.is_symlink():
            for directory, subdirs, files in os.walk(path, onerror=_reraise):
                for name in [*subdirs, *files]:
                    stamps.append(os.lstat(os.path.join(directory, name)).st_mtime)
    except OSError:
        return float("inf")
    return max(stamps)


def _reraise(exc: OSError) -> None:
    raise exc


def still_incoming(incoming_dir: Path, batch: list[list[str]]) -> list[bool]:
    """For each set's input files, whether any still exists under ``incoming_dir``.

    Such a set's record must stay: with ``post_handle: none`` the files stay there for good,
    and without the record a restarted watcher would announce the set again.
    """
    root = incoming_dir.resolve()
    return [any(_is_incoming(root, Path(f)) for f in files) for files in batch]


def _is_incoming(root: Path, path: Path) -> bool:
    try:
        return _inside(path.resolve(), [root]) and path.exists()
    except OSError:
        return True  # cannot tell (e.g. a stale mount): keep the record


def remove_paths(removals: list[Removal]) -> None:
    """Delete the leftovers found by :func:`stale_leftovers` (blocking)."""
    for r in removals:
        path = Path(r.name)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


async def run_pass(
    config: Config, redis: Redis, *, dry_run: bool = False, now: float | None = None
) -> Report:
    """One housekeeping pass (no lease: see :func:`run_exclusive`)."""
    now = time.time() if now is None else now
    keys, target, hk = Keys(config.redis.namespace), describe_target(config), config.housekeeping
    report = Report(dry_run)
    incoming = config.paths.incoming_dir

    async def inputs_present(batch: list[list[str]]) -> list[bool]:
        return await anyio.to_thread.run_sync(still_incoming, incoming, batch)

    report.removals += await state_hk.prune_records(
        redis,
        keys,
        now,
        hk.record_retention_days * SECONDS_PER_DAY,
        dry_run,
        target,
        inputs_present,
    )
    if not dry_run:  # the registry's per-block index goes with the block's record
        pruned = [r.name for r in report.removals if r.kind == "block"]
        await Calibrations(redis, keys, target).forget_blocks(pruned)
    report.removals += await state_hk.trim_acked(
        redis, keys, config.streams, config.retry, now, dry_run, target
    )
    report.removals += await state_hk.prune_dead_letters(
        redis, keys, now, hk.dead_letter_retention_days * SECONDS_PER_DAY, dry_run, target
    )
    report.removals += await state_hk.prune_alerts(
        redis, keys, now, hk.alert_retention_days * SECONDS_PER_DAY, dry_run, target
    )
    report.removals += await state_hk.prune_registry(
        redis, keys, now, config.supervisor.registry_ttl_sec, config.streams.retention_sec,
        dry_run, target,
    )  # fmt: skip
    leftovers = await anyio.to_thread.run_sync(stale_leftovers, config, now)
    results = await state_hk.block_results(redis, keys, target)
    leftovers += await anyio.to_thread.run_sync(superseded_block_outputs, config, results)
    if not dry_run:
        await anyio.to_thread.run_sync(remove_paths, leftovers)
    report.removals += leftovers
    return report


def superseded_block_outputs(config: Config, results: dict[str, dict[str, str]]) -> list[Removal]:
    """Output files that a block's committed run superseded (older tokens' files, which the
    committing holder removes itself unless it died between its commit and the removal).
    Only files inside ``results_dir`` beside the ones a record names are considered."""
    removals = []
    for block_id, outputs in sorted(results.items()):
        try:
            finals = [
                inside_roots(p, [config.paths.results_dir], f"block {block_id} results")
                for p in outputs.values()
            ]
        except PathOutsideRootsError as exc:
            log.warning("block_results_outside_results_dir", reason=str(exc))
            continue
        if finals:
            token = max(unfenced(p.name)[2] for p in finals)
            removals += [
                Removal("superseded-output", str(p)) for p in superseded_outputs(finals, token)
            ]
    return removals


async def run_exclusive(config: Config, redis: Redis, *, dry_run: bool = False) -> Report:
    """A pass under the housekeeping lease (LeaseHeldError while another host runs one)."""
    leases = Leases(redis, Keys(config.redis.namespace), config.leases)
    async with leases.hold(LEASE_NAME):
        return await run_pass(config, redis, dry_run=dry_run)


async def housekeeping_loop(config: Callable[[], Config], redis: Redis) -> None:
    """The daemon's periodic task: one pass per interval across all daemons."""
    while True:
        cfg = config()
        if cfg.housekeeping.enabled:
            await _maybe_run(cfg, redis)
        await anyio.sleep(min(CHECK_EVERY_SEC, cfg.housekeeping.interval_sec))


async def _maybe_run(cfg: Config, redis: Redis) -> None:
    keys, target = Keys(cfg.redis.namespace), describe_target(cfg)
    try:
        leases = Leases(redis, keys, cfg.leases, target=target)
        async with leases.hold(LEASE_NAME):
            if not await state_hk.claim_run(redis, keys, cfg.housekeeping.interval_sec, target):
                return  # another daemon ran it within this interval
            report = await run_pass(cfg, redis)
        if report.removals:
            log.info("housekeeping", removed=report.counts())
    except LeaseHeldError:
        return
    except StateError as exc:
        log.warning("housekeeping_failed", error=str(exc))
    except Exception as exc:  # a bug here must not take the daemon down
        log.error("housekeeping_error", error=describe(exc), exc_info=True)


async def run_by_hand(config: Config, dry_run: bool) -> Report:
    """``dsa110ctl housekeeping``: a pass now, under the lease, whatever the interval."""
    from dsa110d.state.connection import connected

    async with connected(config) as redis:
        deadline = anyio.current_time() + config.leases.ttl_sec
        while True:  # a daemon's pass may hold the lease for a moment: wait it out
            try:
                return await run_exclusive(config, redis, dry_run=dry_run)
            except LeaseHeldError:
                if anyio.current_time() > deadline:
                    raise
                await anyio.sleep(0.2)


def render_report(report: Report) -> str:
    """One line per removal, then the totals."""
    verb = "would remove" if report.dry_run else "removed"
    if not report.removals:
        return f"housekeeping: nothing to remove ({'dry run' if report.dry_run else 'done'})"
    lines = []
    for r in report.removals:
        age = f" (age {r.age_sec / 3600:.1f} h)" if r.age_sec is not None else ""
        count = f" x{r.count}" if r.count != 1 else ""
        lines.append(f"{verb} {r.kind:15} {r.name}{count}{age}")
    totals = ", ".join(f"{k} {v}" for k, v in sorted(report.counts().items()))
    lines.append(f"housekeeping: {verb} {totals}")
    return "\n".join(lines)
