"""The MS processor's block half: pending blocks -> stage runs -> published, committed results.

:class:`BlockRunner` holds what the processor shares between its halves (the config, the state
records, the leases, the block plan, the MS_PROCESSING stream, the wake-up event) and runs the
blocks; :class:`dsa110d.services.processor.MSProcessingHandler` adds the sets and the messages.

* **Blocks**: the block loop wakes on each new chunk and every ``poll_interval_sec``, walks the
  pending blocks and processes each one that is complete or whose end is
  ``processing_timeout_sec`` past (``science.pipeline.blocks.BlockPlan.status``; for old data,
  counted from when its first chunk was recorded), and whose chunks' fast searches are done
  or overdue (:meth:`~dsa110d.services.fast_alerts.FastAlerter.holds_back`). Under the lease
  ``block:<id>`` the stages run in a worker process with outputs in a staging directory;
  then the token is checked, the outputs are renamed into ``paths.results_dir`` under names
  that carry the run's version and fencing token (``photometry/<block>.v<n>.t<token>.parquet``:
  a paused holder that lost the lease can never overwrite the new holder's files) and the
  block record naming them is committed at version n+1 in the same transaction as the token
  check (``Leases.run_fenced``); MS_PROCESSING ``kind=block`` follows. A chunk that arrives
  after its block was processed makes the block pending again; once the re-run (version n+1)
  has committed, the files of older tokens are removed (:meth:`BlockRunner.publish_run`).
* **Calibration solutions**: a stage output ``cal_<kind>`` (the calibrate stage's
  ``cal_bandpass``, ``cal_gains``) is a solution's JSON sidecar; after publication the
  sidecars are read (:func:`~dsa110d.services.processor_outputs.read_cal_solutions`) and the
  solutions registered (:class:`~dsa110d.state.calibration.Calibrations`) in the same fenced
  transaction as the block's commit, so a stale holder registers nothing and each solution is
  registered once; a run whose stages reported ``cal_status`` also widens the span of
  calibrated data, by which the service's health judges how long the data has gone without a
  valid bandpass. A sidecar that breaks the contract fails the run (its outputs taken back).
  A staging directory no run can use any more (its version committed, or a newer holder
  granted the lease: a holder killed between its commit and its clean-up leaves one) is
  removed at start-up and after every pass over the pending blocks
  (:meth:`BlockRunner.sweep_staging`).
* **Monitoring** (``services.monitoring``): a run's candidates table is recorded as pending
  registration in its fenced commit, registered after it and, if that fails, on every later
  pass; a re-run the monitoring alone asked for runs photometry only and keeps the last run's
  other results (its images, sources, calibration) in the new record.
* **External programs**: a stage that runs a program outside the daemon (``image``: wsclean)
  runs in a worker call of its own through that program's circuit breaker
  (``processor_jobs.EXTERNAL_PROGRAMS``). A failure fails the block as any stage's does, until
  ``breakers.failure_threshold`` in a row open the breaker: then the stage is reported
  ``skipped`` with the reason at once, the block goes on without it, and the processor is
  DEGRADED, until a probe after ``breakers.reset_timeout_sec`` succeeds.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import structlog

from dsa110d.config import Config
from dsa110d.contracts import PROCESSOR_GROUP, BlockProcessed
from dsa110d.errors import (
    CircuitOpenError,
    DSA110Error,
    FencingError,
    LeaseHeldError,
    LeaseLostError,
    StageError,
    StateError,
    describe,
)
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.metrics import ServiceMetrics
from dsa110d.paths import inside_roots
from dsa110d.resilience import BreakerBoard
from dsa110d.science.atomic import STAGING_DIR
from dsa110d.science.pipeline.blocks import Block, BlockPlan, Chunk
from dsa110d.services import monitoring, processor_jobs
from dsa110d.services.fast_alerts import FastAlerter
from dsa110d.services.processor_jobs import BREAKER_COUNTED, stage_segments
from dsa110d.services.processor_outputs import (
    read_cal_solutions,
    remove_stale_staging,
    staged_runs,
    staging_is_abandoned,
)
from dsa110d.state.blocks import BlockRecord, Blocks, ChunkRecord
from dsa110d.state.calibration import Calibrations, unix_to_mjd
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Lease, Leases
from dsa110d.state.monitored import MonitoredSources
from dsa110d.state.streams import ReliableStream

Runner = Callable[..., Awaitable[Any]]


def _clock(record: BlockRecord, now: float) -> float:
    """The time to judge a block's timeout by: its chunks get ``processing_timeout_sec`` from
    the later of its end and when its first chunk was recorded, so that a backlog of old data
    is not processed by timeout (and then re-run for every chunk) as each block's first chunk
    arrives."""
    return now - max(0.0, record.created_at - record.end)


class BlockRunner:
    """Pending blocks -> stage runs -> published, committed results (the module docstring)."""

    def __init__(
        self,
        config: Config,
        redis: Redis,
        run_in_worker: Runner,
        log: structlog.stdlib.BoundLogger | None = None,
        metrics: ServiceMetrics | None = None,
        service: str = "processor",
        breakers: BreakerBoard | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self.breakers = breakers or BreakerBoard.from_config(config.breakers)
        self.cfg = config.services.ms_processor
        self.redis = redis
        self.run_in_worker = run_in_worker
        self.log = log or structlog.get_logger("dsa110d.services.processor")
        self.metrics = metrics or ServiceMetrics()
        self.producer = Producer.here(service)
        keys = Keys(config.redis.namespace)
        self.keys = keys
        self.blocks = Blocks(redis, keys)
        self.calibrations = Calibrations(redis, keys)
        self.monitored = MonitoredSources(redis, keys)
        self.leases = Leases(redis, keys, config.leases)
        self.plan = BlockPlan.from_config(self.cfg)
        self.roots = config.paths.data_roots()
        self.ms_stream = self._stream(MessageType.MS_PROCESSING)
        self.wake = anyio.Event()
        """Set when a new chunk is recorded: the block loop checks the pending blocks at once."""
        self.beat: Callable[[], None] = lambda: None
        """The service's heartbeat (the processor's handler sets it): fed while waiting."""
        self.fast = FastAlerter(self)

    def _stream(self, message_type: MessageType) -> ReliableStream:
        return ReliableStream(
            self.redis,
            self.keys,
            message_type,
            PROCESSOR_GROUP,
            self.config.streams,
            self.config.retry,
        )

    async def sweep_staging(self) -> list[str]:
        """Remove the block staging directories that no run can use any more
        (:func:`staging_is_abandoned`); the paths removed.

        A run removes its own staging when it ends and the staging of older tokens when it
        starts, but a holder killed between its commit and that clean-up leaves its staging
        behind with no later run of the block to remove it (the block is processed): this
        sweep, at start-up and after every pass over the pending blocks, does. A block whose
        record housekeeping has pruned is left to housekeeping's age rule."""
        root = Path(self.config.paths.results_dir).absolute() / STAGING_DIR
        removed = []
        for path, block_id, version, token in await anyio.to_thread.run_sync(staged_runs, root):
            record = await self.blocks.block(block_id)
            newest = await self.leases.newest_token(Keys.block_lease(block_id))
            if record is not None and staging_is_abandoned(version, token, record.version, newest):
                await anyio.to_thread.run_sync(partial(shutil.rmtree, path, ignore_errors=True))
                removed.append(str(path))
        if removed:
            self.log.info("staging_removed", paths=removed)
        return removed

    # ------------------------------------------------------------------ blocks
    async def check_blocks(self, now: float | None = None) -> list[BlockProcessed]:
        """Process every pending block that is ready now; returns the runs committed."""
        now = time.time() if now is None else now
        done = []
        for block_id in await self.blocks.pending():
            outcome = await self.process_block(block_id, now)
            if outcome is not None:
                done.append(outcome)
        await monitoring.retry_pending(self.monitored, self.blocks, self.log)
        await self.sweep_staging()
        return done

    async def _block_chunks(self, block: Block) -> list[ChunkRecord]:
        margin = self.plan.slot_sec
        return await self.blocks.chunks(block.start - 2 * margin, block.end + margin)

    async def process_block(self, block_id: str, now: float | None = None) -> BlockProcessed | None:
        """Run one block if it is ready and nobody else is running it; None if not run."""
        now = time.time() if now is None else now
        try:
            block = self.plan.block_by_id(block_id)
        except DSA110Error as exc:
            self.log.warning("block_id_unusable", block_id=block_id, reason=str(exc))
            return None
        try:
            async with self.leases.hold(Keys.block_lease(block_id)) as lease:
                record = await self.blocks.block(block_id)
                if record is None:  # pruned by housekeeping: nothing left to run
                    await self.blocks.forget_pending(block_id)
                    return None
                if not record.stale:
                    return None  # already run by someone else
                known = await self._block_chunks(block)
                by_path = {c.path: c for c in known}
                status = self.plan.status(
                    block, [Chunk(c.start, c.end, c.path) for c in known], _clock(record, now)
                )
                if not status.ready or not status.chunks:
                    return None
                chunks = [by_path[c.path] for c in status.chunks]
                if await self.fast.holds_back(chunks, now):
                    return None  # the search reads the MSs the stages write: after it
                began = time.monotonic()
                with self.metrics.job():
                    outcome = await self._run_block(
                        lease, block, record, chunks, status.missing_slots
                    )
                self.metrics.observe("block", time.monotonic() - began)
        except LeaseHeldError:
            return None
        except LeaseLostError as exc:  # FencingError too: a newer holder owns the block
            self.log.warning("block_superseded", block_id=block_id, reason=str(exc))
            return None
        except Exception as exc:
            reason = describe(exc)
            attempts = await self.blocks.record_failure(
                block_id, reason, self.config.retry.max_attempts
            )
            self.log.warning("block_failed", block_id=block_id, reason=reason, attempts=attempts)
            return None
        await self._announce_block(outcome)
        self.metrics.add("blocks")
        self.log.info(
            "block_processed", block_id=block_id, version=outcome.version,
            chunks=len(outcome.chunks), missing_slots=list(outcome.missing_slots),
        )  # fmt: skip
        return outcome

    async def _run_block(
        self,
        lease: Any,
        block: Block,
        record: BlockRecord,
        chunks: list[ChunkRecord],
        missing: tuple[int, ...],
    ) -> BlockProcessed:
        version = record.version + 1
        ms_paths = [
            str(inside_roots(c.path, self.roots, f"chunk {c.chunk_id} path")) for c in chunks
        ]
        results_dir = Path(self.config.paths.results_dir).absolute()
        staging = results_dir / STAGING_DIR / f"{block.id}.v{version}.t{lease.token}"
        await anyio.to_thread.run_sync(
            remove_stale_staging, results_dir / STAGING_DIR, block.id, int(lease.token)
        )
        config_doc = self.config.model_dump(mode="json", exclude={"redis"})
        ids = [c.chunk_id for c in chunks]
        rerun = monitoring.monitoring_rerun(record, ids, missing, config_doc["pipeline"]["stages"])
        if rerun is not None:  # photometry alone: the last run's images and sources stand
            config_doc["pipeline"]["stages"] = rerun.stages
            self.log.info("block_rerun_for_monitoring", block_id=block.id, stages=rerun.stages)
        timeout = self.cfg.processing_timeout_sec
        watch = await monitoring.monitored_for_job(self.monitored, self.log)
        try:
            with anyio.move_on_after(timeout) as scope:
                runs = await self.run_stages(
                    config_doc, block.id, version, missing, ms_paths, staging, watch
                )
                stages = [processor_jobs.StageRun.from_json(run) for run in runs]
            if scope.cancelled_caught:
                raise StageError(
                    f"block {block.id}: processing took longer than processing_timeout_sec "
                    f"({timeout:g} s); its worker was stopped"
                )
            fraction = processor_jobs.flag_fraction(runs)
            if fraction is not None:
                self.metrics.flag_fraction = fraction
            bad = processor_jobs.bad_antennas(runs)
            if bad is not None:
                self.metrics.bad_antennas = bad
            outputs = {
                f"{s.stage}.{kind}" if kind != s.stage else kind: path
                for s in stages
                for kind, path in s.outputs.items()
            }
            kept = rerun.results if rerun is not None else {}
            qa = {**(rerun.qa if rerun is not None else {}), **{s.stage: s.summary for s in stages}}
            results = await self.publish_run(
                lease, block.id, version, record.generation, ids, missing, staging, outputs, qa,
                carried=kept,
            )  # fmt: skip
            fresh = {k: v for k, v in results.items() if k not in kept}
            await self.fast.after_block(lease, block.id, ids, fresh)
            await monitoring.after_commit(self.monitored, self.blocks, fresh, block.id, self.log)
        finally:  # shielded: a cancelled run (shutdown, timeout) must still clean up
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(staging, ignore_errors=True))
        return BlockProcessed(
            block.id, version, results, tuple(c.path for c in chunks), tuple(ids), missing,
            block.start, block.end,
        )  # fmt: skip

    async def run_stages(
        self,
        config_doc: dict[str, Any],
        block_id: str,
        version: int,
        missing: tuple[int, ...],
        ms_paths: list[str],
        staging: Path,
        monitored: list[list[Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """The stages of ``config_doc`` in order: the in-process ones together in one worker
        call, each external program's stage in its own call through that program's breaker."""
        results: list[dict[str, Any]] = []
        for names, program in stage_segments(list(config_doc["pipeline"]["stages"])):

            async def run(names: list[str] = names) -> list[dict[str, Any]]:
                done: list[dict[str, Any]] = await self.run_in_worker(
                    processor_jobs.block_job, config_doc, block_id, version, list(missing),
                    ms_paths, str(staging), names, monitored,
                )  # fmt: skip
                return done

            if program is None:
                results += await run()
                continue
            breaker = self.breakers.get(program, owner=self.service, counted=BREAKER_COUNTED)
            try:
                results += await breaker.call(run)
            except CircuitOpenError as exc:
                self.log.warning("stage_skipped", block_id=block_id, stages=names, reason=str(exc))
                results += [
                    {"stage": n, "status": "skipped", "outputs": {}, "summary": {},
                     "message": str(exc)}
                    for n in names
                ]  # fmt: skip
        return results

    async def publish_run(
        self,
        lease: Lease,
        block_id: str,
        version: int,
        generation: int,
        chunk_ids: list[str],
        missing: tuple[int, ...],
        staging: Path,
        outputs: dict[str, str],
        qa: dict[str, Any] | None = None,
        carried: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """Publish a run's staged outputs and commit the block record that names them (with
        ``qa``: each stage's summary; with ``carried``: the last run's results a monitoring
        re-run keeps, named again as they are). A published candidates table is recorded as
        pending registration in the same transaction (``services.monitoring``).

        The files are renamed into ``paths.results_dir`` under names that carry the run's
        version and fencing token (``processor_jobs.publish_outputs``), so no other holder's
        file is ever replaced; the record naming them is written in the same transaction as
        the token check (``Leases.run_fenced``). A holder superseded meanwhile (paused past
        its lease) gets FencingError and takes its files back; after a commit, the files of
        older tokens (the previous version, leftovers of superseded holders) are removed.
        """
        results_dir = Path(self.config.paths.results_dir).absolute()
        await self.leases.commit(lease)  # FencingError: a newer holder publishes instead
        results: dict[str, str] = await anyio.to_thread.run_sync(
            processor_jobs.publish_outputs, staging, results_dir, outputs, version, lease.token
        )
        try:
            solutions = await anyio.to_thread.run_sync(read_cal_solutions, results)
            for solution in solutions:
                if (solution.block_id, solution.block_version) != (block_id, version):
                    raise StateError(
                        f"calibration sidecar {solution.path}: written for block "
                        f"{solution.block_id} v{solution.block_version}, published by the run "
                        f"of {block_id} v{version}"
                    )
            previous = await self.calibrations.previous(block_id) if solutions else {}
        except DSA110Error:  # a sidecar that breaks the contract: the run fails, unnamed
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(processor_jobs.remove_outputs, results)
            raise
        span = self._calibrated_span(block_id, qa or {})
        named = {**(carried or {}), **results}
        candidates = results.get(monitoring.CANDIDATES_OUTPUT)

        def stage(pipe: Any) -> None:
            self.blocks.stage_commit(
                pipe, block_id, version, generation, chunk_ids, missing, named, qa=qa
            )
            if candidates is not None:
                self.monitored.stage_pending(pipe, block_id, candidates)
            if solutions or span is not None:
                self.calibrations.stage_register(pipe, solutions, previous, lease.token, span)

        try:
            await self.leases.run_fenced(lease, stage)
        except FencingError:  # not applied: nothing names our files, no one else writes them
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(processor_jobs.remove_outputs, results)
            raise
        await anyio.to_thread.run_sync(processor_jobs.remove_superseded, results, lease.token)
        return named

    def _calibrated_span(self, block_id: str, qa: dict[str, Any]) -> tuple[float, float] | None:
        """The block's span (MJD) when a stage of this run reported a calibration status
        (``cal_status``: the calibrate stage ran, with or without a new solution), else None."""
        if not any(isinstance(s, dict) and "cal_status" in s for s in qa.values()):
            return None
        block = self.plan.block_by_id(block_id)
        return unix_to_mjd(block.start), unix_to_mjd(block.end)

    async def _announce_block(self, outcome: BlockProcessed) -> None:
        message = new_message(MessageType.MS_PROCESSING, outcome.to_payload(), self.producer)
        await self.ms_stream.publish(
            message, dedup_key=f"block:{outcome.block_id}:v{outcome.version}"
        )

    async def block_loop(self, stopping: anyio.Event, gate: Callable[..., Awaitable[None]]) -> None:
        """Check the pending blocks on every wake-up and every ``poll_interval_sec``."""
        while not stopping.is_set():
            await gate(None)
            with anyio.move_on_after(self.cfg.poll_interval_sec):
                await self.wake.wait()
            self.wake = anyio.Event()

    async def check_blocks_job(self, _: object) -> None:
        """``check_blocks`` as a gated job (logs a state-server error rather than crashing)."""
        try:
            await self.check_blocks()
        except DSA110Error as exc:
            self.log.warning("block_check_failed", reason=str(exc))
