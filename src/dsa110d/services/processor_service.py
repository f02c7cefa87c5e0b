"""The ``processor`` service: the MS processor's consumers and block loop under supervision.

The work itself (a set's conversion, a chunk's record, a block's pipeline run, each message)
is :class:`dsa110d.services.processor.MSProcessingHandler`'s; this module starts it, runs its
three stream consumers (sets, chunk and block messages, the fast-alert search: each chunk
imaged and searched off the set handler, ``services.fast_alerts``) and its block loop under
the service's gate, and reports its health and backlog, and the calibration registry's
summary (metrics; DEGRADED when the calibrated data has gone
``calibration.max_days_without_bandpass`` days without a valid bandpass).
"""

from __future__ import annotations

import anyio

from dsa110d.config import CalibrationConfig
from dsa110d.errors import DSA110Error
from dsa110d.metrics import ServiceMetrics
from dsa110d.services.base import Health, HealthReport, Service, ServiceContext, register_service
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.state.calibration import CalibrationSummary
from dsa110d.state.consumer import StreamConsumer, consumer_name

CALIBRATE_STAGE = "calibrate"
"""The stage whose solutions the registry holds (``science.pipeline.stages``)."""
STATS_INTERVAL_SEC = 5.0
"""How often the backlog and queue lag are refreshed for health and metrics."""


@register_service("processor")
class MSProcessorService(Service):
    """The ``processor`` service: three stream consumers and the block loop."""

    worker_modules = (
        "dsa110d.science.conversion.convert",
        "dsa110d.science.pipeline.chunkinfo",
        "dsa110d.science.pipeline.stages",
        "dsa110d.science.pipeline.flagging",
        "dsa110d.science.photometry.stage",
        "dsa110d.services.processor_jobs",
    )

    def __init__(self) -> None:
        self.handler: MSProcessingHandler | None = None
        self.consumers: list[StreamConsumer] = []
        self.backlog = 0
        self.backlog_limit = 0
        self.calibration: CalibrationSummary | None = None
        self.cal_config = CalibrationConfig()
        self.calibrating = False
        """``calibrate`` is among ``pipeline.stages``: only then is the registry judged (a
        pipeline that stopped calibrating is not DEGRADED for the calibrator's absence)."""

    async def start(self, ctx: ServiceContext) -> None:
        self.handler = MSProcessingHandler(
            ctx.config, ctx.redis, ctx.run_in_worker, ctx.log, ctx.metrics,
            service=ctx.name, beat=ctx.beat, breakers=ctx.breakers,
        )  # fmt: skip
        self.backlog_limit = ctx.config.supervisor.backlog_degraded
        self.cal_config = ctx.config.calibration
        self.calibrating = CALIBRATE_STAGE in ctx.config.pipeline.stages
        await self.handler.start()

    async def run(self, ctx: ServiceContext) -> None:
        handler = self.handler
        assert handler is not None  # start() ran
        self.consumers = [
            StreamConsumer(
                handler.hdf5_stream,
                consumer_name(self.name),
                ctx.gate(handler.handle_set),
                on_dead=handler.set_dead,
            ),
            StreamConsumer(
                handler.ms_stream, consumer_name(self.name), ctx.gate(handler.handle_ms_message)
            ),
            StreamConsumer(
                handler.fast.stream, consumer_name(self.name), ctx.gate(handler.fast.handle)
            ),
        ]

        async def everything() -> None:
            async with anyio.create_task_group() as tg:
                for consumer in self.consumers:
                    tg.start_soon(consumer.run)
                tg.start_soon(handler.block_loop, ctx.stopping, ctx.gate(handler.check_blocks_job))
                tg.start_soon(self._stats_loop, ctx)

        await ctx.consume(everything)

    async def _stats_loop(self, ctx: ServiceContext) -> None:
        while True:
            try:
                await self.refresh_stats(ctx.metrics)
            except DSA110Error as exc:
                ctx.log.debug("stats_refresh_failed", reason=str(exc))
            try:  # on its own: a bad solution record must not stop the backlog's refresh
                await self.refresh_calibration(ctx.metrics)
            except DSA110Error as exc:
                ctx.log.debug("calibration_refresh_failed", reason=str(exc))
            await anyio.sleep(STATS_INTERVAL_SEC)

    async def refresh_stats(self, metrics: ServiceMetrics) -> None:
        """Backlog (sets waiting or in hand), queue lag, pending blocks and the chunk messages
        the fast search has not yet done with, for health and metrics."""
        handler = self.handler
        assert handler is not None
        stats = await handler.hdf5_stream.stats()
        ms_stats = await handler.ms_stream.stats()
        pending_blocks = await handler.blocks.pending_count()
        fast = await handler.fast.stream.stats()
        self.backlog = stats.undelivered + stats.pending
        metrics.backlog = self.backlog
        metrics.queue_lag_sec = round(stats.oldest_pending_age_sec or 0.0, 3)
        metrics.dead_letters = stats.dead_letters + ms_stats.dead_letters
        metrics.counters["pending_blocks"] = pending_blocks
        metrics.counters["fast_search_backlog"] = fast.undelivered + fast.pending

    async def refresh_calibration(self, metrics: ServiceMetrics) -> None:
        """The calibration registry's summary, for health and metrics (none before a
        calibrate stage has run on a block)."""
        handler = self.handler
        assert handler is not None
        summary = await handler.calibrations.summary() if self.calibrating else None
        if summary is None or summary.last_mjd is None:
            self.calibration, metrics.calibration = None, None
            return
        self.calibration = summary
        metrics.calibration = {**summary.to_metrics(), "gains_qa_ok": self.gains_qa_ok()}

    def gains_qa_ok(self) -> bool | None:
        """The newest gain solution is ok and within ``calibration.gain_*_max`` (None: none)."""
        gains = self.calibration.gains if self.calibration else None
        if gains is None:
            return None
        cfg = self.cal_config
        return (
            gains.status == "ok"
            and gains.amp_scatter <= cfg.gain_amp_scatter_max
            and gains.phase_scatter_deg <= cfg.gain_phase_scatter_max_deg
        )

    def calibration_problem(self) -> str | None:
        """Why the calibration makes the processor DEGRADED: no valid bandpass for more than
        ``calibration.max_days_without_bandpass`` days of processed data."""
        age = self.calibration.bandpass_age_days if self.calibration else None
        limit = self.cal_config.max_days_without_bandpass
        if age is None or age <= limit:
            return None
        assert self.calibration is not None
        newest = self.calibration.bandpass
        since = f"since bandpass {newest.solution_id}" if newest else "and none ever solved"
        return (
            f"no valid bandpass for {age:.1f} days of data ({since}; "
            f"calibration.max_days_without_bandpass = {limit:g})"
        )

    def health(self) -> HealthReport:
        if self.consumers and not all(c.connected for c in self.consumers):
            return HealthReport(Health.DEGRADED, "state server unreachable; consuming paused")
        if self.backlog_limit and self.backlog > self.backlog_limit:
            return HealthReport(
                Health.DEGRADED,
                f"backlog of {self.backlog} sets is over supervisor.backlog_degraded "
                f"({self.backlog_limit})",
            )
        problem = self.calibration_problem()
        if problem is not None:
            return HealthReport(Health.DEGRADED, problem)
        return HealthReport.healthy()
