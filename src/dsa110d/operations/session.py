"""Opening the state server for one ``dsa110ctl`` command.

Read-only questions about running daemons (``status``, ``health``) must not start an embedded
server as a side effect: when the configuration says ``redis.embedded`` and none runs under the
state directory, no daemon can be running there either, and :func:`attach` says so by yielding
None. Commands that act on stored state (queues, dead letters) start it, as the daemon would.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from dsa110d.config import Config
from dsa110d.state import embedded
from dsa110d.state.connection import (
    Redis,
    client_for,
    connected,
    describe_target,
    lent_client,
    translate_errors,
)


@contextlib.asynccontextmanager
async def attach(config: Config) -> AsyncIterator[Redis | None]:
    """A client on the configured server, or None when its embedded server is not running."""
    if not config.redis.embedded or lent_client() is not None:
        async with connected(config) as redis:
            yield redis
        return
    server = embedded.running_server(config.paths.state_dir)
    if server is None:
        yield None
        return
    client = client_for(config, server)
    try:
        with translate_errors(describe_target(config)):
            await client.ping()
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


@contextlib.asynccontextmanager
async def open_state(config: Config) -> AsyncIterator[Redis]:
    """A client on the configured server, starting the embedded one if configured."""
    async with connected(config) as redis:
        yield redis
