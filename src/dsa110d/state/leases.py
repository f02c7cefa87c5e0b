"""Leases with a TTL and fencing tokens, for anything exclusive (a set, a block, the analyzer).

A lease is one key, ``<ns>:lease:<name>``, whose value is ``"<token> <owner>"`` and whose TTL
is ``leases.ttl_sec``. Acquiring it takes the next value of the namespace's one counter
``<ns>:fence-tokens`` (INCR) and records it in ``<ns>:fence:<name>``, so every holder ever gets
a larger token than the one before: the **fencing token**. Tokens are unique in the namespace
and keep growing after housekeeping removed a lease's keys with the record it guarded, so a
token can name a holder's output files (a block run's) for good. All operations are Lua
scripts checked against the owner, so a holder can only renew or release its own lease.

Why tokens: a holder can pause (GC, a stalled disk, a suspended VM) past its TTL, lose the
lease to a new holder and then wake up still believing it holds it. Its writes must then be
refused. :meth:`Leases.commit` does that atomically in Lua: it succeeds only if the token is
still the newest ever issued for that name (and not older than the last commit), and records
it; otherwise it raises :class:`~dsa110d.errors.FencingError`. :meth:`Leases.run_fenced`
applies a caller's Redis state change in the same transaction as that check (WATCH/MULTI on
the fence counter), so a stale holder's change is never applied.

:meth:`Leases.hold` is the everyday form::

    async with leases.hold(f"set:{set_id}") as lease:   # LeaseHeldError if someone has it
        result = await convert(...)                       # auto-renewed meanwhile
        await leases.commit(lease)                        # FencingError if we were superseded

While the body runs the lease is renewed every ``leases.renew_interval_sec``. When renewal
finds the lease gone (expired and taken, or the server unreachable until the TTL ran out) the
body's anyio cancel scope is cancelled and ``hold`` raises
:class:`~dsa110d.errors.LeaseLostError` to the caller. On a normal exit the lease is released.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import redis.exceptions as redis_errors
from redis.asyncio.client import Pipeline

from dsa110d.config import LeasesConfig
from dsa110d.errors import FencingError, LeaseHeldError, LeaseLostError, StateError, sole_error
from dsa110d.logs import get_logger
from dsa110d.state import lua
from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.durability import confirm
from dsa110d.state.keys import Keys

log = get_logger(__name__)


@dataclass(frozen=True)
class Lease:
    """A lease as granted: its name, owner, fencing token and TTL."""

    name: str
    owner: str
    token: int
    ttl_sec: float

    @property
    def value(self) -> str:
        return f"{self.token} {self.owner}"


def default_owner() -> str:
    """host:pid:random, unique to this holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leases:
    """Acquire, renew, release, hold and commit leases under one namespace."""

    def __init__(
        self, redis: Redis, keys: Keys, config: LeasesConfig, *, target: str = "the state server"
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.config = config
        self.target = target
        self._acquire = lua.script(redis, "leases_acquire")
        self._renew = lua.script(redis, "leases_renew")
        self._release = lua.script(redis, "leases_release")
        self._commit = lua.script(redis, "leases_commit")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        with translate_errors(self.target):
            yield

    async def acquire(
        self, name: str, owner: str | None = None, ttl_sec: float | None = None
    ) -> Lease | None:
        """Take the lease if free; None if someone holds it."""
        owner = owner or default_owner()
        ttl = ttl_sec or self.config.ttl_sec
        with self._guard():
            token = await self._acquire(
                keys=[self.keys.lease(name), self.keys.fence(name), self.keys.fence_tokens()],
                args=[owner, int(ttl * 1000)],
            )
        return None if token is None else Lease(name, owner, int(token), ttl)

    async def renew(self, lease: Lease) -> bool:
        """Extend the TTL; False if the lease is no longer ours."""
        with self._guard():
            ok = await self._renew(
                keys=[self.keys.lease(lease.name)], args=[lease.value, int(lease.ttl_sec * 1000)]
            )
        return bool(ok)

    async def release(self, lease: Lease) -> bool:
        """Give the lease up; False if it was no longer ours."""
        with self._guard():
            ok = await self._release(keys=[self.keys.lease(lease.name)], args=[lease.value])
        return bool(ok)

    async def holder(self, name: str) -> tuple[int, str] | None:
        """(token, owner) of the current holder, or None."""
        with self._guard():
            value = await self.redis.get(self.keys.lease(name))
        if value is None:
            return None
        token, _, owner = str(value).partition(" ")
        return int(token), owner

    async def newest_token(self, name: str) -> int:
        """The newest fencing token ever issued for ``name`` (0 if none): a holder with an
        older one can no longer commit."""
        with self._guard():
            value = await self.redis.get(self.keys.fence(name))
        return int(value or 0)

    async def commit(self, lease: Lease) -> None:
        """Record a commit if ``lease.token`` is still the newest; FencingError otherwise."""
        with self._guard():
            ok, other = await self._commit(
                keys=[self.keys.fence(lease.name), self.keys.committed_token(lease.name)],
                args=[lease.token],
            )
        if not int(ok):
            raise FencingError(
                f"lease {lease.name!r}: token {lease.token} is stale (token {int(other)} "
                "has been issued since); this holder must not commit"
            )
        await confirm(self.redis, self.keys, self.target, f"the commit of lease {lease.name!r}")

    async def run_fenced(self, lease: Lease, stage: Callable[[Pipeline], Any]) -> list[Any]:
        """Apply ``stage(pipe)``'s queued commands only if the token is the newest (atomic)."""
        fence = self.keys.fence(lease.name)
        committed = self.keys.committed_token(lease.name)
        try:
            with self._guard():
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(fence, committed)
                    newest = int(await pipe.get(fence) or 0)
                    done = int(await pipe.get(committed) or 0)
                    if lease.token != newest or lease.token < done:
                        raise FencingError(
                            f"lease {lease.name!r}: token {lease.token} is stale "
                            f"(newest {max(newest, done)}); change not applied"
                        )
                    pipe.multi()  # type: ignore[no-untyped-call]
                    stage(pipe)
                    pipe.set(committed, lease.token)
                    results: list[Any] = await pipe.execute()
        except redis_errors.WatchError:
            raise FencingError(
                f"lease {lease.name!r}: a newer holder appeared during the commit of token "
                f"{lease.token}; change not applied"
            ) from None
        await confirm(self.redis, self.keys, self.target, f"the commit of lease {lease.name!r}")
        return results[:-1]

    @asynccontextmanager
    async def hold(self, name: str, owner: str | None = None) -> AsyncIterator[Lease]:
        """Hold a lease while the body runs (see the module docstring)."""
        lease = await self.acquire(name, owner)
        if lease is None:
            current = await self.holder(name)
            who = f"{current[1]} (token {current[0]})" if current else "another holder"
            raise LeaseHeldError(f"lease {name!r} is held by {who}")
        lost: list[str] = []
        try:
            with sole_error():  # the body's own error, not a group of ours
                async with anyio.create_task_group() as tg:
                    with anyio.CancelScope() as work:
                        tg.start_soon(self._keep_renewed, lease, work, lost)
                        yield lease
                    # cancel the renewer only now: an outer cancelled scope would otherwise
                    # take the work scope's cancellation and the loss would go unreported
                    tg.cancel_scope.cancel()
        except BaseException:
            await self._release_quietly(lease)
            raise
        if work.cancelled_caught and lost:
            raise LeaseLostError(f"lease {name!r} (token {lease.token}) was lost: {lost[0]}")
        await self._release_quietly(lease)

    async def _release_quietly(self, lease: Lease) -> None:
        with anyio.move_on_after(self.config.renew_interval_sec, shield=True):
            try:
                await self.release(lease)
            except StateError as exc:
                log.warning(
                    "lease release failed; it will expire", lease=lease.name, error=str(exc)
                )

    async def _keep_renewed(self, lease: Lease, work: anyio.CancelScope, lost: list[str]) -> None:
        """Renew every interval; cancel the work when the lease is gone or cannot be known."""
        expires = anyio.current_time() + lease.ttl_sec
        while True:
            await anyio.sleep(self.config.renew_interval_sec)
            started = anyio.current_time()
            try:
                if await self.renew(lease):
                    expires = started + lease.ttl_sec
                    continue
                lost.append("it expired and was taken, or was released by force")
            except StateError as exc:
                if anyio.current_time() < expires:
                    log.warning("lease renewal failed; retrying", lease=lease.name, error=str(exc))
                    continue
                lost.append(f"could not renew before the TTL ran out ({exc})")
            log.warning("lease lost; cancelling its work", lease=lease.name, token=lease.token)
            work.cancel()
            return
