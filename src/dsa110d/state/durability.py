"""Acknowledged writes that survive a failover: WAIT for replicas before counting them done.

With Sentinel, a master that dies may take its last writes with it: replication is
asynchronous, and the promoted replica knows only what reached it. Writes that the pipeline
acknowledges to someone (a set claimed and announced, a stream entry acked, a chunk recorded,
a block committed) therefore call :func:`confirm` afterwards, which blocks until
``redis.acked_replicas()`` replicas hold them or ``redis.wait_timeout_ms`` passes; a
shortfall raises :class:`~dsa110d.errors.ReplicationError` (a :class:`StateError`), so the
caller does not acknowledge and the work is retried (every effect is idempotent).

``WAIT`` counts the writes of the connection it is sent on, and a pool hands out any
connection; so :func:`confirm` bumps a barrier counter and waits for *that* write on one
connection: the replication stream is ordered, so a replica that has the barrier has every
write that completed before it. It waits for the replicas connected now, up to the configured
number: a master left alone (its replica died, or it is the replica promoted after a failover)
goes on without waiting, since no failover can then lose what no replica could take over.

The policy travels with the client (``connection.Durability``, attached by
``connection.connect``), so the state classes need no extra argument; a client without one
(the embedded server, tests) never waits.
"""

from __future__ import annotations

from dsa110d.errors import ReplicationError
from dsa110d.state.connection import Redis, durability_of, translate_errors
from dsa110d.state.keys import Keys


async def confirm(redis: Redis, keys: Keys, target: str, what: str) -> None:
    """Return once the configured replicas hold every write that completed before this call."""
    policy = durability_of(redis)
    if policy is None or policy.replicas == 0:
        return
    with translate_errors(target):
        role = await redis.execute_command("ROLE")  # type: ignore[no-untyped-call]
        wanted = min(policy.replicas, len(role[2]) if role[0] == "master" else 0)
        if wanted == 0:
            return
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(keys.replication_barrier())
            pipe.wait(wanted, policy.timeout_ms)
            _, acked = await pipe.execute()
    if int(acked) < wanted:
        raise ReplicationError(
            f"{target}: {what} was not confirmed by {wanted} replica(s) within "
            f"{policy.timeout_ms} ms (only {int(acked)}; redis.wait_replicas, "
            "redis.wait_timeout_ms); it will be retried"
        )
