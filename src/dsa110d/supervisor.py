"""The daemon's lifecycle: connect, report READY and health, stop on SIGTERM or SIGINT.

This first cut runs no services yet; the ServiceManager grows here.
"""

from __future__ import annotations

import signal

import anyio

from dsa110d.config import Config
from dsa110d.logs import get_logger
from dsa110d.state.connection import connected, describe_target, translate_errors

HEALTH_INTERVAL_SEC = 5.0

log = get_logger("dsa110d.supervisor")


async def run_daemon(config: Config, services: list[str]) -> int:
    """Run until SIGTERM or SIGINT; the exit status for the process."""
    target = describe_target(config)
    async with connected(config) as redis, anyio.create_task_group() as tg:
        log.info("ready", server=target, services=services, health="HEALTHY")

        async def report_health() -> None:
            while True:
                await anyio.sleep(HEALTH_INTERVAL_SEC)
                with translate_errors(target):
                    await redis.ping()
                log.info("health", health="HEALTHY", server=target)

        tg.start_soon(report_health)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("stopping", signal=signal.Signals(signum).name)
                break
        tg.cancel_scope.cancel()
    return 0
