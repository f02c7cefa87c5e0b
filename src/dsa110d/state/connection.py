"""Connections to the state server: from the config, embedded by default, errors translated.

This is the one place where redis-py exceptions become dsa110d exceptions.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import anyio
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from dsa110d.config import Config, RedisConfig, redact_url, url_passwords
from dsa110d.errors import ServerUnavailableError, StateError
from dsa110d.logs import register_secret
from dsa110d.state import embedded

Redis = aioredis.Redis


def describe_target(config: Config) -> str:
    """Where the daemon looks for its server, for messages: ``host:port``, socket or sentinel."""
    rc = config.redis
    if rc.embedded:
        return f"embedded Valkey under {embedded.server_dir(config.paths.state_dir)}"
    if rc.sentinel.addresses:
        return f"sentinel master {rc.sentinel.master_name!r} via {', '.join(rc.sentinel.addresses)}"
    if rc.url is not None:
        return redact_url(rc.url.get_secret_value())
    return f"{rc.host}:{rc.port}"


def _pool_kwargs(rc: RedisConfig) -> dict[str, Any]:
    password = rc.secret_password()
    register_secret(password)
    kwargs: dict[str, Any] = {
        "db": rc.db,
        "username": rc.username,
        "password": password,
        "max_connections": rc.max_connections,
        "socket_timeout": rc.socket_timeout,
        "socket_connect_timeout": rc.socket_connect_timeout,
        "retry_on_timeout": rc.retry_on_timeout,
        "health_check_interval": rc.health_check_interval,
        "decode_responses": True,
    }
    kwargs.update(_tls_kwargs(rc))
    return kwargs


def _tls_kwargs(rc: RedisConfig) -> dict[str, Any]:
    if not rc.tls.enabled:
        return {}
    return {
        "ssl": True,
        "ssl_ca_certs": str(rc.tls.ca_file) if rc.tls.ca_file else None,
        "ssl_certfile": str(rc.tls.cert_file) if rc.tls.cert_file else None,
        "ssl_keyfile": str(rc.tls.key_file) if rc.tls.key_file else None,
        "ssl_cert_reqs": "required" if rc.tls.verify else "none",  # async redis-py wants str
        "ssl_check_hostname": rc.tls.verify,
    }


def _sentinel_kwargs(rc: RedisConfig) -> dict[str, Any]:
    """How to talk to the sentinels themselves: their own credentials, the same TLS."""
    password = rc.sentinel.secret_password()
    register_secret(password)
    return {
        "username": rc.sentinel.username,
        "password": password,
        "socket_timeout": rc.socket_timeout,
        "socket_connect_timeout": rc.socket_connect_timeout,
        "decode_responses": True,
        **_tls_kwargs(rc),
    }


def client_for(config: Config, server: embedded.EmbeddedServer | None = None) -> Redis:
    """A client (with its own pool) for the configured server; does not connect yet."""
    rc = config.redis
    kwargs = _pool_kwargs(rc)
    if server is not None:
        if server.password is not None:  # the embedded server's own, generated at its start
            register_secret(server.password)
            kwargs.update(username=None, password=server.password)
        return aioredis.Redis(unix_socket_path=str(server.socket_path), **_unix_kwargs(kwargs))
    if rc.sentinel.addresses:
        nodes = [(a.rpartition(":")[0], int(a.rpartition(":")[2])) for a in rc.sentinel.addresses]
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            nodes, sentinel_kwargs=_sentinel_kwargs(rc), socket_timeout=rc.socket_timeout
        )
        master: Redis = sentinel.master_for(
            rc.sentinel.master_name or "", connection_pool_class=_SentinelPool, **kwargs
        )
        return master
    if rc.url is not None:
        url = rc.url.get_secret_value()
        for secret in url_passwords(url):
            register_secret(secret)
        url_kwargs = {k: v for k, v in kwargs.items() if v is not None}
        client: Redis = aioredis.Redis.from_url(url, **url_kwargs)
        return client
    return aioredis.Redis(host=rc.host, port=rc.port, **kwargs)


class _SentinelPool(SentinelConnectionPool):
    """The master's pool, which also closes the connections to the sentinels when it is
    closed (redis-py leaves them open)."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.connection_pool.disconnect()


def _unix_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if not k.startswith("ssl")}


async def connect(config: Config) -> Redis:
    """Start or attach the embedded server when configured, connect and PING."""
    server = None
    if config.redis.embedded:
        server = await anyio.to_thread.run_sync(
            embedded.ensure_server, config.paths.state_dir, config.redis.embedded_port
        )
    with translate_errors(describe_target(config)):
        await _plain_probe(config, server)
    client = client_for(config, server)
    try:
        with translate_errors(describe_target(config)):
            await client.ping()
    except BaseException:
        await client.aclose()
        raise
    if server is None:  # the embedded server has no replicas to wait for
        policy = Durability(config.redis.acked_replicas(), config.redis.wait_timeout_ms)
        setattr(client, _DURABILITY_ATTR, policy)
    return client


@dataclass(frozen=True)
class Durability:
    """How many replicas must confirm an acknowledged write (``state.durability.confirm``),
    and how long to wait for them; it travels with the client ``connect`` made."""

    replicas: int
    timeout_ms: int


_DURABILITY_ATTR = "_dsa110_durability"


def durability_of(redis: Redis) -> Durability | None:
    """The durability ``connect`` attached to ``redis``; None for any other client."""
    return getattr(redis, _DURABILITY_ATTR, None)


async def _plain_probe(config: Config, server: embedded.EmbeddedServer | None) -> None:
    """One PING without health checks and timeout retries, before the pool is made: with
    both, redis-py recurses on an authentication error (a server that wants a password and
    none given), hiding the cause and leaking the socket."""
    quiet = config.redis.model_copy(update={"health_check_interval": 0, "retry_on_timeout": False})
    probe = client_for(config.model_copy(update={"redis": quiet}), server)
    try:
        await probe.ping()
    finally:
        await probe.aclose()


_LENT: ContextVar[Redis | None] = ContextVar("dsa110d_lent_client", default=None)


@contextlib.contextmanager
def lending(client: Redis) -> Iterator[None]:
    """Within this context (and the tasks started from it), :func:`connected` yields
    ``client``: how the web service's requests share the daemon's connection pool instead of
    connecting (and probing the embedded server) once per request."""
    token = _LENT.set(client)
    try:
        yield
    finally:
        _LENT.reset(token)


def lent_client() -> Redis | None:
    """The client lent to this context, if any."""
    return _LENT.get()


@contextlib.asynccontextmanager
async def connected(config: Config) -> AsyncIterator[Redis]:
    """``async with connected(cfg) as redis:`` closes the pool on the way out.

    Inside :func:`lending` it yields the lent client instead (and leaves it open)."""
    lent = _LENT.get()
    if lent is not None:
        yield lent
        return
    client = await connect(config)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


@contextlib.contextmanager
def translate_errors(target: str) -> Iterator[None]:
    """Turn redis-py exceptions into one-line dsa110d errors that say what to check."""
    try:
        yield
    except redis_errors.AuthenticationError as exc:
        if "required" in str(exc).lower():
            raise ServerUnavailableError(
                f"{target}: the server wants authentication ({_first_line(exc)}); "
                "set redis.username and redis.password or password_file"
            ) from None
        raise ServerUnavailableError(
            f"{target}: authentication failed ({_first_line(exc)}); "
            "check redis.username and redis.password / password_file"
        ) from None
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise ServerUnavailableError(
            f"cannot reach the state server at {target}: {_connection_hint(exc)}"
        ) from None
    except redis_errors.NoPermissionError as exc:
        raise StateError(
            f"{target}: the ACL user may not do this ({_first_line(exc)}); "
            "compare the server's ACL line with docs/security.md"
        ) from None
    except redis_errors.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise ServerUnavailableError(
                f"{target}: the server wants authentication ({_first_line(exc)}); "
                "set redis.password or redis.password_file"
            ) from None
        raise StateError(f"{target}: {_first_line(exc)}") from None


def _connection_hint(exc: BaseException) -> str:
    """What went wrong and what to check, from the text of a connection failure."""
    text = _first_line(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"TLS: the server's certificate is not trusted ({text}); check redis.tls.ca_file "
            "and that redis.host is the name in the certificate"
        )
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return f"TLS handshake failed ({text}); the port may not speak TLS: check redis.tls"
    if "reset by peer" in text or "Connection closed by server" in text:
        return (
            f"the server closed the connection ({text}); a TLS-only server does this to "
            "plain text: check redis.tls.enabled"
        )
    return f"{text}; check that it runs, the address, the firewall and the TLS settings"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
