"""The MS processor: announced sets -> Measurement Sets (chunks) -> processed blocks.

:class:`MSProcessingHandler` does the work (its block half is
:class:`dsa110d.services.processor_blocks.BlockRunner`) and is usable without the daemon (tests);
:class:`dsa110d.services.processor_service.MSProcessorService` runs it as the ``processor``
service.

* **Sets** (HDF5_PROCESSING, consumer group ``processor``): check the message (the set id,
  every path resolved inside the data roots: :mod:`dsa110d.paths`), hold the lease
  ``set:<id>``, mark the set converting, convert it in a worker process
  (``processor_jobs.convert_job``) into ``paths.ms_dir/<set id>.ms``, check the fencing token,
  record the chunk and its blocks (:class:`~dsa110d.state.blocks.Blocks`), mark the set
  converted, publish MS_PROCESSING ``kind=chunk`` (dedup key ``chunk:<set id>``) and return,
  which acks. The chunk's fast-alert search reads that announcement in a consumer group of its
  own (:mod:`dsa110d.services.fast_alerts`): the set handler never waits for it. A failure
  is retried with backoff by the consumer and the set is marked queued with the error; the
  last allowed attempt marks it failed, and the consumer moves the entry
  to the dead letters with the reason (any other dead letter of an announcement, e.g. one
  delivered too often, marks its set failed through the consumer's ``on_dead`` hook,
  :meth:`MSProcessingHandler.set_dead`). A processor whose lease lapsed (LeaseLostError,
  FencingError) leaves the set's record to the holder that took over. A conversion longer
  than ``processing_timeout_sec`` is cancelled (its worker is killed) and counts as a failure.
* **Chunk messages** (MS_PROCESSING, group ``processor``): checked the same way; a chunk not
  yet recorded (another producer's) is recorded if its MS is complete; then the block loop
  is woken. Block messages are checked and otherwise ignored (they are the analyzer's).
* **Blocks**, **calibration solutions** and **external programs**: see
  :mod:`dsa110d.services.processor_blocks`.
* **Poison**: a message whose set id or paths fail the checks raises MessageError or
  PathOutsideRootsError, which the consumer dead-letters at once (no retries); no file named
  only by such a message is read, written or removed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import structlog

from dsa110d.config import Config
from dsa110d.contracts import (
    BlockProcessed,
    ChunkConverted,
    SetAnnounced,
    ms_message,
    set_id_of,
)
from dsa110d.errors import (
    ConfigError,
    ConversionError,
    LeaseHeldError,
    LeaseLostError,
    MessageError,
    PathOutsideRootsError,
    describe,
)
from dsa110d.messages import Message, MessageType, new_message
from dsa110d.metrics import ServiceMetrics
from dsa110d.paths import inside_roots, paths_inside
from dsa110d.resilience import BreakerBoard
from dsa110d.science.atomic import is_complete_dir
from dsa110d.science.pipeline.blocks import Chunk
from dsa110d.services import processor_jobs
from dsa110d.services.processor_blocks import BlockRunner, Runner
from dsa110d.state.blocks import BlockSpan, ChunkRecord
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.sets import Sets, SetState
from dsa110d.state.stream_entries import Delivery

ANNOUNCED = (SetState.QUEUED, SetState.CONVERTING)
"""States in which a set has been announced to the processor and not yet finished."""


def _make_dirs(directories: dict[str, Path]) -> None:
    """Create the output directories; one line naming the one that cannot be (ConfigError,
    as the watcher does for its own), not a traceback on every restart."""
    for key, directory in directories.items():
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{key}: cannot create {directory}: {exc}") from None


class MSProcessingHandler(BlockRunner):
    """Sets -> chunks -> blocks (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        redis: Redis,
        run_in_worker: Runner,
        log: structlog.stdlib.BoundLogger | None = None,
        metrics: ServiceMetrics | None = None,
        service: str = "processor",
        beat: Callable[[], None] | None = None,
        breakers: BreakerBoard | None = None,
    ) -> None:
        super().__init__(config, redis, run_in_worker, log, metrics, service, breakers)
        self.beat = beat or (lambda: None)
        """The service's heartbeat: called while a job waits on something other than a worker."""
        self.sets = Sets(redis, self.keys)
        self.hdf5_stream = self._stream(MessageType.HDF5_PROCESSING)

    async def start(self) -> None:
        """Create the consumer groups (idempotent) and the output directories."""
        await self.hdf5_stream.ensure_group()
        await self.ms_stream.ensure_group()
        await self.fast.start()
        roots = {
            "paths.ms_dir": self.config.paths.ms_dir,
            "paths.results_dir": self.config.paths.results_dir,
        }
        await anyio.to_thread.run_sync(_make_dirs, roots)
        await self.sweep_staging()

    # ------------------------------------------------------------------ sets
    async def handle_set(self, delivery: Delivery) -> None:
        """One HDF5_PROCESSING message: convert, record, announce (see the module docstring)."""
        message = delivery.message
        set_id = set_id_of(message)
        try:
            files, out, partial = self._set_inputs(message, set_id)
        except (MessageError, PathOutsideRootsError) as exc:
            # Only a set this message could be about: one still collecting is not failed by
            # a forged or garbled announcement (nor taken off the open list).
            await self.sets.mark(set_id, SetState.FAILED, str(exc), from_states=ANNOUNCED)
            raise
        log = self.log.bind(set_id=set_id, message_id=message.id)
        final_attempt = len(delivery.attempts) + 1 >= self.config.retry.max_attempts
        await self._wait_for_other_holder(Keys.set_lease(set_id))
        try:
            with self.metrics.job():
                await self._convert_and_record(message, set_id, files, out, partial, log)
        except (LeaseHeldError, LeaseLostError):
            # Someone else is converting it (or took over when our lease lapsed; FencingError
            # is a LeaseLostError): the set's record is theirs, so leave it alone.
            raise
        except Exception as exc:
            reason = describe(exc)
            state = SetState.FAILED if final_attempt else SetState.QUEUED
            await self.sets.mark(set_id, state, reason)
            log.warning("set_failed", reason=reason, final=final_attempt)
            raise

    async def set_dead(self, delivery: Delivery, reason: str) -> None:
        """The consumer's ``on_dead`` hook for HDF5_PROCESSING: a set whose announcement goes
        to the dead letters (e.g. delivered too often, its consumers dying on it) is marked
        failed with the reason, rather than left queued or converting for ever."""
        try:
            set_id = set_id_of(delivery.message)
        except MessageError:
            return  # no set to speak of
        reason = f"dead-lettered: {reason}"
        if await self.sets.mark(set_id, SetState.FAILED, reason, from_states=ANNOUNCED):
            self.log.warning("set_failed", set_id=set_id, reason=reason, final=True)

    async def _wait_for_other_holder(self, lease: str) -> None:
        """A duplicate announcement of a set being converted elsewhere waits for that
        conversion (up to ``processing_timeout_sec``) and then finds the MS done, rather than
        spending its retries while the other holder works."""
        with anyio.move_on_after(self.cfg.processing_timeout_sec):
            while await self.leases.holder(lease) is not None:
                self.beat()  # waiting on another holder, not stuck: keep the watchdog fed
                await anyio.sleep(self.config.leases.renew_interval_sec)

    def _set_inputs(self, message: Message, set_id: str) -> tuple[list[Path], Path, bool]:
        announced = SetAnnounced.from_payload(message.payload, message.id)
        files = paths_inside(
            list(announced.paths()), self.roots, f"message {message.id} payload.files"
        )
        out = inside_roots(
            str(Path(self.config.paths.ms_dir).absolute() / f"{set_id}.ms"),
            self.roots,
            f"set {set_id} MS",
        )
        return files, out, announced.partial

    async def _convert_and_record(
        self,
        message: Message,
        set_id: str,
        files: list[Path],
        out: Path,
        partial: bool,
        log: structlog.stdlib.BoundLogger,
    ) -> None:
        async with self.leases.hold(Keys.set_lease(set_id)) as lease:
            await self.sets.mark(set_id, SetState.CONVERTING)
            timeout = self.cfg.processing_timeout_sec
            with anyio.move_on_after(timeout) as scope:
                done = processor_jobs.Converted.from_json(
                    await self.run_in_worker(
                        processor_jobs.convert_job, [str(f) for f in files], str(out), partial
                    )
                )
            if scope.cancelled_caught:
                raise ConversionError(
                    f"set {set_id}: conversion took longer than processing_timeout_sec "
                    f"({timeout:g} s); its worker was stopped"
                )
            chunk = ChunkRecord(set_id, set_id, done.start, done.end, done.dec_rad, str(out))
            await self.leases.commit(lease)
            new = await self._record(chunk)
            await self.sets.mark(set_id, SetState.CONVERTED)
        await self._announce_chunk(chunk, message.trace_id)
        self.metrics.add("sets")
        self.metrics.observe("conversion", done.seconds)
        log.info(
            "set_converted", ms=str(out), reused=done.reused, new_chunk=new,
            seconds=round(done.seconds, 2),
        )  # fmt: skip

    async def _record(self, chunk: ChunkRecord) -> bool:
        blocks = self.plan.blocks_of_chunk(Chunk(chunk.start, chunk.end, chunk.path))
        spans = [BlockSpan(b.id, b.start, b.end) for b in blocks]
        new = await self.blocks.record_chunk(chunk, spans)
        if new:
            self.metrics.add("chunks")
            self.wake.set()
        return new

    async def _announce_chunk(self, chunk: ChunkRecord, trace_id: str) -> None:
        blocks = self.plan.blocks_of_chunk(Chunk(chunk.start, chunk.end, chunk.path))
        converted = ChunkConverted(
            chunk.set_id, chunk.chunk_id, chunk.path, chunk.start, chunk.end, chunk.dec_rad,
            tuple(b.id for b in blocks),
        )  # fmt: skip
        message = new_message(
            MessageType.MS_PROCESSING, converted.to_payload(), self.producer, trace_id
        )
        await self.ms_stream.publish(message, dedup_key=f"chunk:{chunk.chunk_id}")

    # ------------------------------------------------------------------ MS_PROCESSING
    async def handle_ms_message(self, delivery: Delivery) -> None:
        """Check a chunk or block message; record a foreign chunk; wake the block loop."""
        message = delivery.message
        contract = ms_message(message.payload, message.id)
        paths_inside(list(contract.paths()), self.roots, f"message {message.id} payload paths")
        if isinstance(contract, BlockProcessed):
            return
        set_id = set_id_of(message)
        ms = inside_roots(contract.ms_path, self.roots, f"message {message.id} payload.ms_path")
        if await self.blocks.chunk(set_id) is None:
            if not await anyio.to_thread.run_sync(is_complete_dir, ms):
                raise ConversionError(f"message {message.id}: {ms} is not a complete MS")
            chunk = ChunkRecord(
                set_id, set_id, contract.start, contract.end, contract.dec_rad, str(ms)
            )
            await self._record(chunk)
        self.wake.set()
