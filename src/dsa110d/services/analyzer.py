"""The variability analyzer: block announcements -> one coalesced analysis run -> results.

:class:`VariabilityAnalysisHandler` does the work and is usable without the daemon (tests);
:class:`VariabilityAnalyzerService` runs it as the ``analyzer`` service:

* **Intake.** The analyzer reads MS_PROCESSING through its *own* consumer group
  (``analyzer``), so it and the processor (group ``processor``) each see every message. A
  ``kind=block`` message is checked (a block id; every path it carries inside the data roots,
  else straight to the dead letters), its block noted in Redis
  (:class:`~dsa110d.state.analysis.AnalysisQueue`) and acked. Chunk messages, and any other
  kind, are the processor's business: acked and ignored.
* **When a run happens.** Once block notes pause for ``analysis_debounce_sec`` (so a burst of
  blocks gives one run), when a full recompute was requested, and every
  ``analysis_interval_hours`` after the last run by any host (counted from the service's start
  when there has been none). The notes and the last-run record are in Redis, so whichever host
  looks next runs; a failed or timed-out run is retried after
  :func:`~dsa110d.state.analysis.retry_delay`.
* **One run at a time** across all hosts: the run holds the lease ``analyzer:run``
  (auto-renewed; a host that finds it held skips, its notes stay pending), and the results are
  committed only if the lease's fencing token is still the newest.
* **The run** is :func:`dsa110d.science.variability.run.analyze` in a worker process (plain
  arguments), bounded by ``analysis_timeout_sec``: past it the worker is killed, the state on
  disk stays at its previous generation, and the run is reported as ``timeout``.
* **Reporting.** After each run: the candidates into Redis
  (:class:`~dsa110d.state.candidates.CandidateStore`, for ``dsa110ctl candidates``), the run
  record, and a VARIABILITY_ANALYSIS message with the status, the summary and the top
  candidates (failed and timed-out runs are announced too, with the error).
* **New candidates.** The run writes a VOEvent 2.0 packet for each candidate that has none
  yet (``results/variability/voevents/``); each is announced on the alerts stream as a
  one-shot ``notice`` of rule ``variability_candidate`` (fingerprint ``candidate:<source>_<class>``,
  so a retried announcement is sent once), with the packet's ivorn and path, unless
  ``alerts.enabled`` or ``alerts.candidates`` is off.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog

from dsa110d.config import Config
from dsa110d.contracts import ANALYZER_GROUP, AnalysisRun, BlockProcessed, MsKind, RunStatus
from dsa110d.errors import (
    DSA110Error,
    LeaseHeldError,
    LeaseLostError,
    MessageError,
    PathOutsideRootsError,
    StateError,
    describe,
)
from dsa110d.messages import MessageType, Producer, encode, new_message
from dsa110d.paths import inside_roots
from dsa110d.resilience import Backoff, RetryPolicy
from dsa110d.services.base import Health, HealthReport, Service, ServiceContext, register_service
from dsa110d.state.alerts import AlertStore, Condition
from dsa110d.state.analysis import AnalysisQueue, Snapshot, seconds_until_due
from dsa110d.state.candidates import CandidateStore
from dsa110d.state.connection import Redis, describe_target
from dsa110d.state.consumer import StreamConsumer, consumer_name
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases
from dsa110d.state.stream_entries import Delivery, Entry
from dsa110d.state.streams import ReliableStream

LEASE_NAME = "analyzer:run"
POLL_SEC = 5.0
"""How often a host looks at the shared queue when nothing wakes it (other hosts' notes)."""
MESSAGE_BLOCKS = 100
"""Block ids listed in a VARIABILITY_ANALYSIS message at most (the count is always given)."""
CANDIDATE_RULE = "variability_candidate"

WorkerRun = Callable[..., Awaitable[Any]]


def analysis_job(*args: Any, **kwargs: Any) -> Any:
    """The worker's entry point: :func:`dsa110d.science.variability.run.analyze`.

    Imported here, in the worker, so that loading this service module (every ``dsa110d run``
    loads every built-in service) does not pay for pandas, scipy and matplotlib.
    """
    from dsa110d.science.variability import run as variability_run

    return variability_run.analyze(*args, **kwargs)


@dataclass
class RunReport:
    """What one run did, as recorded in Redis and announced."""

    status: RunStatus
    run_time: str
    started_at: float
    finished_at: float
    snapshot: Snapshot
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.OK

    def record(self) -> dict[str, Any]:
        run = self.result.get("run", {})
        summary = self.result.get("summary", {})
        return {
            "status": self.status,
            "run_time": self.run_time,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": round(self.finished_at - self.started_at, 3),
            "error": self.error,
            "n_blocks_noted": len(self.snapshot.blocks),
            "full": self.snapshot.full,
            "n_sources": summary.get("n_sources"),
            "n_candidates": summary.get("n_candidates"),
            "counts": summary.get("counts"),
            "state": run.get("state"),
            "blocks_added": run.get("blocks_added"),
            "blocks_replaced": run.get("blocks_replaced"),
        }

    def message(self) -> AnalysisRun:
        blocks = tuple(self.snapshot.blocks)
        outputs = dict(self.result.get("outputs", {}))
        if self.result:
            outputs["light_curves"] = len(outputs.get("light_curves") or [])
            outputs["light_curve_tables"] = len(outputs.get("light_curve_tables") or [])
            outputs["voevents"] = [v.get("ivorn") for v in self.result.get("voevents") or []]
        return AnalysisRun(
            status=self.status,
            run_time=self.run_time,
            seconds=round(self.finished_at - self.started_at, 3),
            error=self.error,
            full=self.snapshot.full,
            n_blocks_noted=len(blocks),
            blocks=blocks[:MESSAGE_BLOCKS],
            summary=self.result.get("summary", {}),
            run=self.result.get("run", {}),
            outputs=outputs,
        )


class VariabilityAnalysisHandler:
    """MS_PROCESSING deliveries -> noted blocks; and the analysis run itself."""

    def __init__(
        self,
        config: Callable[[], Config],
        redis: Redis,
        run_in_worker: WorkerRun,
        log: structlog.stdlib.BoundLogger | None = None,
        *,
        service: str = "analyzer",
        max_light_curves: int | None = None,
    ) -> None:
        self._config = config
        cfg = config()
        keys = Keys(cfg.redis.namespace)
        target = describe_target(cfg)
        self.stream = ReliableStream(
            redis, keys, MessageType.MS_PROCESSING, ANALYZER_GROUP, cfg.streams, cfg.retry,
            target=target,
        )  # fmt: skip
        self.announcements = ReliableStream(
            redis, keys, MessageType.VARIABILITY_ANALYSIS, ANALYZER_GROUP, cfg.streams, cfg.retry,
            target=target,
        )  # fmt: skip
        self.queue = AnalysisQueue(redis, keys, target=target)
        self.store = CandidateStore(redis, keys, target=target)
        self.alerts = AlertStore(
            redis, keys, host=Producer.here(service).host, stream_max_len=cfg.alerts.stream_max_len,
            target=target,
        )  # fmt: skip
        self.leases = Leases(redis, keys, cfg.leases, target=target)
        self.run_in_worker = run_in_worker
        self.max_light_curves = max_light_curves  # None: the science default
        self.log = log or structlog.get_logger("dsa110d.services.analyzer")
        self.producer = Producer.here(service)
        self.consumer = consumer_name(service)
        self.started = time.time()
        self.wake = anyio.Event()
        self.last_report: RunReport | None = None
        self.runs = 0
        self.pending = 0  # blocks noted and not yet analysed (all hosts), for the backlog gauge
        self.skipped = 0

    @property
    def config(self) -> Config:
        return self._config()

    # ------------------------------------------------------------------ intake
    async def handle(self, delivery: Delivery) -> None:
        """Note a block announcement (chunks and other kinds are ignored)."""
        message = delivery.message
        if message.payload.get("kind") != MsKind.BLOCK:
            return
        try:
            block = BlockProcessed.from_payload(message.payload, message.id)
            roots = self.config.paths.data_roots()
            for path in block.paths():
                inside_roots(path, roots, f"message {message.id} payload")
        except (MessageError, PathOutsideRootsError) as exc:
            await self._dead_letter(delivery, describe(exc))
            return
        await self.queue.note_blocks([block.block_id], time.time())
        self.log.info("block_noted", block_id=block.block_id, message=message.id)
        self.wake.set()

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        """A message that no retry can fix goes to the dead letters at once."""
        entry = Entry(delivery.entry_id, encode(delivery.message).encode(), delivery.deliveries)
        await self.stream.dead_letter(entry, reason, self.consumer, list(delivery.attempts))
        self.log.warning("message_dead_lettered", entry=delivery.entry_id, reason=reason)

    # ------------------------------------------------------------------ scheduling
    async def seconds_until_due(self) -> float:
        cfg = self.config.services.variability_analyzer
        outlook = await self.queue.outlook()
        self.pending = outlook.pending
        if outlook.last_finished is None:  # never run: the interval counts from our start
            outlook = replace(outlook, last_finished=self.started, last_status=RunStatus.OK)
        return seconds_until_due(
            outlook,
            time.time(),
            debounce_sec=cfg.analysis_debounce_sec,
            interval_sec=cfg.analysis_interval_hours * 3600.0,
        )

    # ------------------------------------------------------------------ the run
    async def run_once(self) -> RunReport | None:
        """One analysis run under the lease; None when another host is running one."""
        try:
            async with self.leases.hold(LEASE_NAME) as lease:
                report = await self._run(lease)
        except LeaseHeldError as exc:
            self.skipped += 1
            self.log.info("analysis_skipped", reason=str(exc))
            return None
        except LeaseLostError as exc:
            now = time.time()
            report = RunReport(
                RunStatus.LEASE_LOST, _iso(now), now, now, Snapshot((), False), error=str(exc)
            )
            await self._report(report)
        self.runs += 1
        self.last_report = report
        return report

    async def _run(self, lease: Any) -> RunReport:
        cfg = self.config
        acfg = cfg.services.variability_analyzer
        taken = await self.queue.snapshot()
        started = time.time()
        run_time = _iso(started)
        thresholds = {
            "min_data_points": acfg.min_data_points,
            "variability_threshold": acfg.variability_threshold,
            "p_threshold": acfg.variability_p_threshold,
            "vs_threshold": acfg.vs_threshold,
            "m_threshold": acfg.m_threshold,
            "false_discovery_rate": acfg.false_discovery_rate,
            "min_mean_snr": acfg.min_mean_snr,
        }
        self.log.info(
            "analysis_started", blocks_noted=len(taken.blocks), full=taken.full, run_time=run_time
        )
        result: Any = None
        error = ""
        status = RunStatus.OK
        with anyio.move_on_after(acfg.analysis_timeout_sec) as scope:
            try:
                extra = {}
                if self.max_light_curves is not None:
                    extra["max_light_curves"] = self.max_light_curves
                result = await self.run_in_worker(
                    analysis_job,
                    str(cfg.paths.results_dir),
                    thresholds,
                    run_time,
                    taken.full,
                    voevent_authority=acfg.voevent_authority,
                    **extra,
                )
            except DSA110Error as exc:
                status, error = RunStatus.FAILED, str(exc)
        if scope.cancelled_caught:
            status = RunStatus.TIMEOUT
            error = f"run cancelled after analysis_timeout_sec = {acfg.analysis_timeout_sec:g} s"
        report = RunReport(status, run_time, started, time.time(), taken, result or {}, error)
        if report.ok:
            await self.leases.commit(lease)  # FencingError if a newer run holds the lease
            summary = report.result["summary"]
            await self.store.replace(summary, report.result["candidates"])
            await self._announce(report.result.get("voevents") or [])
        await self._report(report)
        return report

    async def _announce(self, packets: list[dict[str, Any]]) -> None:
        """Each new candidate's VOEvent as a one-shot notice on the alerts stream."""
        cfg = self.config.alerts
        if not (cfg.enabled and cfg.candidates):
            return
        now = time.time()
        for packet in packets:
            local = str(packet["ivorn"]).rsplit("#", 1)[-1]
            where = ""
            if packet.get("ra_deg") is not None and packet.get("dec_deg") is not None:
                where = f" at RA {packet['ra_deg']:.5f}, Dec {packet['dec_deg']:+.5f} deg"
            condition = Condition(
                f"candidate:{local}",
                CANDIDATE_RULE,
                "info",
                f"new {packet['class']} candidate {packet['source_id']}{where} ({packet['ivorn']})",
                details={k: v for k, v in packet.items() if v is not None},
            )
            await self.alerts.notice(condition, now)
        if packets:
            self.log.info("candidates_announced", count=len(packets))

    async def _report(self, report: RunReport) -> None:
        left = await self.queue.finish(
            report.snapshot if report.ok else None, report.record(), report.finished_at
        )
        message = new_message(
            MessageType.VARIABILITY_ANALYSIS, report.message().to_payload(), self.producer
        )
        await self.announcements.publish(message)
        fields = report.record()
        if report.ok:
            self.log.info("analysis_finished", still_pending=left, **fields)
        else:
            self.log.error("analysis_failed", **fields)


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat()


@register_service("analyzer")
class VariabilityAnalyzerService(Service):
    """Runs the variability analysis (see the module docstring)."""

    worker_modules = ("dsa110d.science.variability.run",)

    def __init__(self) -> None:
        self.handler: VariabilityAnalysisHandler | None = None
        self.consumer: StreamConsumer | None = None
        self.problem = ""

    async def start(self, ctx: ServiceContext) -> None:
        self.handler = VariabilityAnalysisHandler(
            lambda: ctx.config, ctx.redis, ctx.run_in_worker, ctx.log, service=ctx.name
        )
        await self.handler.stream.ensure_group()
        self.consumer = StreamConsumer(
            self.handler.stream, self.handler.consumer, ctx.gate(self.handler.handle)
        )

    async def run(self, ctx: ServiceContext) -> None:
        assert self.handler is not None and self.consumer is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(ctx.consume, self.consumer.run)
            await self._schedule(ctx, self.handler)

    async def _schedule(self, ctx: ServiceContext, handler: VariabilityAnalysisHandler) -> None:
        """Run when due; wake early when a block is noted; survive server outages."""
        backoff = Backoff(RetryPolicy(1, 0.5, POLL_SEC))
        while await ctx.take_work():
            handler.wake = anyio.Event()  # notes from now on wake the wait below
            try:
                wait = await handler.seconds_until_due()
                if wait <= 0:
                    ran = await self._run_counted(ctx, handler)
                    wait = 0.0 if ran else POLL_SEC  # held elsewhere: look again later
                self.problem = ""
                backoff.reset()
            except StateError as exc:
                self.problem = f"state server: {exc}"
                wait = backoff.next_delay()
                ctx.log.warning("analysis_scheduling_failed", error=str(exc), retry_in_sec=wait)
            ctx.metrics.backlog = handler.pending
            if wait <= 0:
                continue
            # asleep until due, a note wakes it, or the heartbeat wants a beat (every third
            # of the registry TTL, as ctx.sleep): a run by another host only postpones the
            # due time, so nothing else needs a look sooner
            beat = max(POLL_SEC, ctx.config.supervisor.registry_ttl_sec / 3)
            with anyio.move_on_after(min(wait, beat)):
                await _wait_either(handler.wake, ctx.stopping)
            ctx.beat()

    @staticmethod
    async def _run_counted(ctx: ServiceContext, handler: VariabilityAnalysisHandler) -> bool:
        """One run, counted in the metrics; False when another host holds the run lease."""
        report = await handler.run_once()
        if report is None:
            ctx.metrics.add("runs_skipped")
            return False
        if report.ok:
            ctx.metrics.processed += 1
            ctx.metrics.add("runs")
        else:
            ctx.metrics.failed += 1
            ctx.metrics.add("runs_failed")
        return True

    def health(self) -> HealthReport:
        if self.problem:
            return HealthReport(Health.DEGRADED, self.problem)
        consumer = self.consumer
        if consumer is not None and consumer.counters.outages and not consumer.connected:
            return HealthReport(Health.DEGRADED, "not consuming MS_PROCESSING (state server?)")
        report = self.handler.last_report if self.handler is not None else None
        if report is not None and not report.ok:
            return HealthReport(
                Health.DEGRADED, f"last analysis run {report.status}: {report.error}"
            )
        return HealthReport.healthy()


async def _wait_either(first: anyio.Event, second: anyio.Event) -> None:
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(wait, first)
        tg.start_soon(wait, second)
