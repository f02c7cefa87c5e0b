"""The ``processor`` service: the MS processor's consumers and block loop under supervision.

The work itself (a set's conversion, a chunk's record, a block's pipeline run, each message)
is :class:`dsa110d.services.processor.MSProcessingHandler`'s; this module starts it, runs its
two stream consumers and its block loop under the service's gate, and reports its health and
backlog.
"""

from __future__ import annotations

import anyio

from dsa110d.errors import DSA110Error
from dsa110d.metrics import ServiceMetrics
from dsa110d.services.base import Health, HealthReport, Service, ServiceContext, register_service
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.state.consumer import StreamConsumer, consumer_name

STATS_INTERVAL_SEC = 5.0
"""How often the backlog and queue lag are refreshed for health and metrics."""


@register_service("processor")
class MSProcessorService(Service):
    """The ``processor`` service: two stream consumers and the block loop."""

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

    async def start(self, ctx: ServiceContext) -> None:
        self.handler = MSProcessingHandler(
            ctx.config, ctx.redis, ctx.run_in_worker, ctx.log, ctx.metrics,
            service=ctx.name, beat=ctx.beat, breakers=ctx.breakers,
        )  # fmt: skip
        self.backlog_limit = ctx.config.supervisor.backlog_degraded
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
            await anyio.sleep(STATS_INTERVAL_SEC)

    async def refresh_stats(self, metrics: ServiceMetrics) -> None:
        """Backlog (sets waiting or in hand), queue lag and pending blocks, for health and
        metrics."""
        handler = self.handler
        assert handler is not None
        stats = await handler.hdf5_stream.stats()
        ms_stats = await handler.ms_stream.stats()
        pending_blocks = await handler.blocks.pending_count()
        self.backlog = stats.undelivered + stats.pending
        metrics.backlog = self.backlog
        metrics.queue_lag_sec = round(stats.oldest_pending_age_sec or 0.0, 3)
        metrics.dead_letters = stats.dead_letters + ms_stats.dead_letters
        metrics.counters["pending_blocks"] = pending_blocks

    def health(self) -> HealthReport:
        if self.consumers and not all(c.connected for c in self.consumers):
            return HealthReport(Health.DEGRADED, "state server unreachable; consuming paused")
        if self.backlog_limit and self.backlog > self.backlog_limit:
            return HealthReport(
                Health.DEGRADED,
                f"backlog of {self.backlog} sets is over supervisor.backlog_degraded "
                f"({self.backlog_limit})",
            )
        return HealthReport.healthy()
