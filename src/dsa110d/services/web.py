"""The web service: the read-only console and HTTP API (:mod:`dsa110d.web`) served by the
daemon on ``services.web.host:port`` (loopback by default).

A thin adapter: the Starlette application answers every request through ``operations`` (the
functions ``dsa110ctl`` calls) on the daemon's own connection pool (lent with
:func:`~dsa110d.state.connection.lending`), and Hypercorn serves it inside the daemon's event
loop. Hypercorn because it can be embedded: it serves until a trigger we give it (the daemon's
``stopping`` event) and installs no signal handlers of its own, which would take SIGTERM and
SIGHUP away from the supervisor.

A port that cannot be bound (taken, not permitted) makes the service UNHEALTHY and it retries
every ``BIND_RETRY_SEC``, rather than crashing: a console that cannot listen must not take the
pipeline's restart intensity, and so the pipeline, down with it.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from dsa110d.logs import get_logger
from dsa110d.services.base import (
    Health,
    HealthReport,
    Service,
    ServiceContext,
    register_service,
)
from dsa110d.state.connection import lending

BIND_RETRY_SEC = 30.0
BEAT_SLEEP_SEC = 3600.0
"""``ctx.sleep`` beats every third of the registry TTL while it sleeps; this only bounds it."""
SHUTDOWN_GRACE_SEC = 2.0
"""Requests in flight get this long to finish at shutdown (they are reads: short)."""

log = get_logger("dsa110d.services.web")


@register_service("web")
class WebService(Service):
    """The console: serve until the daemon stops, beating meanwhile."""

    def __init__(self) -> None:
        self._health = HealthReport.healthy()
        self._app: Any = None

    async def start(self, ctx: ServiceContext) -> None:
        """Build the application (and read the token file) before READY: a token file that
        cannot be used is a configuration error, reported at start-up in one line."""
        from dsa110d.web.app import create_app
        from dsa110d.web.security import is_loopback, read_token

        web = ctx.config.services.web
        token = read_token(web.token_file)
        if token is None and not is_loopback(web.host):
            log.warning(
                "web_console_open",
                host=web.host,
                reason="listening beyond loopback without services.web.token_file: anyone "
                "who reaches the port can read the console",
            )
        self._app = create_app(lambda: ctx.config, token)

    async def run(self, ctx: ServiceContext) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config as HypercornConfig

        web = ctx.config.services.web
        app = self._app
        server = HypercornConfig()
        server.bind = [f"[{web.host}]:{web.port}" if ":" in web.host else f"{web.host}:{web.port}"]
        server.accesslog = None
        server.errorlog = logging.getLogger("dsa110d.web.server")
        server.graceful_timeout = SHUTDOWN_GRACE_SEC
        server.include_server_header = False
        url = web.url
        while not ctx.stopping.is_set():
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._beat, ctx)
                self._health = HealthReport.healthy()
                log.info("web_console", url=url, bind=server.bind[0])
                try:
                    with lending(ctx.redis):
                        await serve(app, server, shutdown_trigger=ctx.stopping.wait)
                    failure = ""
                except OSError as exc:
                    failure = f"cannot listen on {server.bind[0]}: {exc.strerror or exc}"
                tg.cancel_scope.cancel()
            if failure:
                self._health = HealthReport(Health.UNHEALTHY, failure)
                log.error("web_console_unavailable", reason=failure, retry_sec=BIND_RETRY_SEC)
                await ctx.sleep(BIND_RETRY_SEC)

    async def _beat(self, ctx: ServiceContext) -> None:
        """The server has no work loop of its own to beat from: beat while it serves."""
        while await ctx.sleep(BEAT_SLEEP_SEC):
            pass

    def health(self) -> HealthReport:
        return self._health
