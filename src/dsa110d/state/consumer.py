"""The consume loop of one consumer on a :class:`~dsa110d.state.streams.ReliableStream`.

``await StreamConsumer(stream, name, handler).run()`` runs until cancelled. Each round it

1. acks, in batches, what it has handled (an ack is sent only after the handler returned:
   the handler's effect is durable by then; if the ack is lost the entry is delivered again,
   so effects must be idempotent, keyed by ``message.id``); a background task flushes acks
   every ``ACK_FLUSH_SEC`` so that a long handler never holds earlier acks back;
2. re-delivers its own failed entries whose backoff has elapsed (a failed handler is *not*
   retried at once: the entry stays pending with a not-before time, exponential backoff with
   full jitter from ``config.retry``);
3. every heartbeat interval, reclaims entries whose owner's heartbeat it has seen lapsed
   for a whole TTL (:class:`LapseWatch`: a server outage lapses live owners' heartbeats too);
4. otherwise blocks on XREADGROUP for new entries (at most ``streams.read_block_ms``);
5. every ``trim_interval_sec``, trims entries past ``streams.retention_sec`` that every group
   has acked, so that no stream grows without bound (any consumer may do it; it is idempotent).

**Fault boundary: one per entry.** Each entry is handled inside its own boundary
(:meth:`StreamConsumer._process`): the entry arrives as bytes, and the delivery count is
checked *before* anything reads its contents, then it is decoded
(:func:`dsa110d.messages.decode`) and handed to the handler. Any ``Exception`` raised there
is classified with :func:`dsa110d.errors.is_service_fault`: a fault of the service (the state
server unreachable, cancellation) leaves the boundary and the loop waits it out; anything else
is recorded against that entry only (a failed attempt, or a dead letter whose reason is
:func:`dsa110d.errors.describe` of the fault) and the loop goes on with the next entry. So a
poison entry reaches the dead letters on its first failure, the entries read or reclaimed
together with it are handled as if it were not there, and none of it counts toward the
service's restart intensity.

An entry that is not a valid envelope, that has failed ``retry.max_attempts`` times, or that
has been delivered more than ``max_attempts`` times without completing (its consumers keep
dying on it) goes to the dead letters with the reason, the attempt history and the raw entry.
A handler that raises :class:`~dsa110d.errors.MessageError` or
:class:`~dsa110d.errors.PathOutsideRootsError` (the message itself is unusable: retrying
cannot help) sends the entry to the dead letters at once, with that error as the reason.
An optional ``on_dead(delivery, reason)`` hook runs first on every dead-letter path whose entry
decoded (permanent error, last failed attempt, too many deliveries), so that the service can
record the outcome on its own state (e.g. mark the set failed): the too-many-deliveries path
never reaches the handler, so the handler cannot do it itself.
Nothing a message contains can crash or stall the loop. While the loop runs, a background
task renews the consumer's heartbeat every ``streams.heartbeat_interval_sec``.

Handlers must not block the event loop (run CPU work in worker processes): a blocked loop
cannot renew the heartbeat, and the entry would be reclaimed by another consumer.

Redis outages: any service fault (:class:`~dsa110d.errors.StateError` from the server, or a
redis-py error that slipped past translation) makes the loop wait
(backoff with jitter, capped at :data:`RECONNECT_CAP_SEC`) and try again; on recovery it
re-creates the group if the server lost it and re-reads its own pending entries. It never
exits on its own. ``connected`` tells health reporting whether the last round succeeded.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from dsa110d.errors import (
    MessageError,
    PathOutsideRootsError,
    StateError,
    describe,
    is_service_fault,
)
from dsa110d.logs import get_logger
from dsa110d.messages import decode
from dsa110d.resilience import Backoff, RetryPolicy
from dsa110d.state.stream_entries import Delivery, Entry
from dsa110d.state.streams import ReliableStream

Handler = Callable[[Delivery], Awaitable[None]]
OnDead = Callable[[Delivery, str], Awaitable[None]]
"""Called with the delivery and the reason before a decoded entry goes to the dead letters."""

RECONNECT_CAP_SEC = 5.0
ACK_FLUSH_SEC = 0.05  # handled entries are acked within this even mid-batch
RECOVER_COUNT = 1000
RETIRE_TIMEOUT_SEC = 2.0
TRIM_INTERVAL_SEC = 60.0
PERMANENT_ERRORS: tuple[type[Exception], ...] = (MessageError, PathOutsideRootsError)
"""Handler errors about the message itself: dead-lettered at once, never retried."""

log = get_logger(__name__)


def consumer_name(service: str) -> str:
    """A name unique to this process: a restarted process never inherits a dead one's work."""
    return f"{service}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LapseWatch:
    """Owners this consumer has seen without a heartbeat, and since when.

    A heartbeat also lapses while the state server is down, restarted or failing over for
    longer than the TTL: its owner is alive, holds entries it has handled and not yet acked,
    and renews within one heartbeat interval of the server's return. Taking its entries at
    first sight handled them twice. So entries are taken from an owner only once this
    consumer has seen its heartbeat missing for a whole TTL (the time any live owner has to
    renew), and an outage this consumer notices forgets every sighting.
    """

    def __init__(self, ttl_sec: float) -> None:
        self.ttl_sec = ttl_sec
        self._since: dict[str, float] = {}

    def take_from(self, lapsed: set[str]) -> set[str]:
        """Note the owners found lapsed now; those lapsed for a whole TTL."""
        now = anyio.current_time()
        self._since = {owner: self._since.get(owner, now) for owner in lapsed}
        return {owner for owner, since in self._since.items() if now - since >= self.ttl_sec}

    def forget(self) -> None:
        self._since.clear()


@dataclass
class ConsumerCounters:
    handled: int = 0
    failed: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    outages: int = 0


class StreamConsumer:
    """One worker slot: handles entries one at a time, in order."""

    def __init__(
        self,
        stream: ReliableStream,
        name: str,
        handler: Handler,
        *,
        batch: int = 64,
        rng: Callable[[], float] = random.random,
        trim_interval_sec: float = TRIM_INTERVAL_SEC,
        on_dead: OnDead | None = None,
    ) -> None:
        self.stream = stream
        self.name = name
        self.handler = handler
        self.on_dead = on_dead
        self.batch = batch
        self.policy = RetryPolicy.from_config(stream.retry)
        self.counters = ConsumerCounters()
        self.connected = False
        self._rng = rng
        self._retry_due: dict[str, float] = {}  # entry id -> not-before (wall clock)
        self._unacked: list[str] = []
        self._ack_wanted: anyio.Event | None = None  # set when an entry joins _unacked
        self._acking: set[str] = set()  # handled, in an XACK whose reply has not come back
        self._last_reclaim = -math.inf
        self._lapses = LapseWatch(stream.config.heartbeat_ttl_sec)
        self._trim_interval = trim_interval_sec
        self._last_trim = -math.inf
        self._log = log.bind(stream=stream.name, consumer=name)

    # ------------------------------------------------------------------ lifecycle
    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Consume until cancelled; never returns or raises on its own."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat_loop)
            tg.start_soon(self._ack_loop)
            task_status.started()
            try:
                await self._loop()
            finally:
                tg.cancel_scope.cancel()
                with anyio.move_on_after(RETIRE_TIMEOUT_SEC, shield=True):
                    await self._retire()

    async def _retire(self) -> None:
        try:
            await self._flush_acks()
            await self.stream.retire(self.name)
        except StateError as exc:
            self._log.warning("consumer could not retire cleanly", error=str(exc))

    async def _heartbeat_loop(self) -> None:
        interval = self.stream.config.heartbeat_interval_sec
        while True:
            try:
                await self.stream.heartbeat(self.name)
            except StateError as exc:
                self._log.debug("heartbeat failed", error=str(exc))
            await anyio.sleep(interval)

    async def _loop(self) -> None:
        backoff = Backoff(
            RetryPolicy(
                1, self.policy.base_delay_sec, min(self.policy.max_delay_sec, RECONNECT_CAP_SEC)
            ),
            self._rng,
        )
        recover = True
        while True:
            try:
                if recover:
                    await self.stream.ensure_group()
                    await self.stream.heartbeat(self.name)
                    await self._recover_own()
                    recover = False
                    if backoff.failures:
                        self._log.info("state server reachable again; consuming resumes")
                self.connected = True
                await self.poll_once()
                backoff.reset()
            except Exception as exc:
                # Entries' own faults were recorded inside their boundary; what arrives here
                # is the server's (waited out) or a bug of this loop (a crash: the supervisor
                # restarts the service, and counts it).
                if not is_service_fault(exc):
                    raise
                self.connected = False
                recover = True
                self._lapses.forget()
                self.counters.outages += 1
                delay = backoff.next_delay()
                self._log.warning(
                    "state server error; retrying", error=describe(exc), delay_sec=delay
                )
                await anyio.sleep(delay)

    # ------------------------------------------------------------------ one round
    async def poll_once(self, block_ms: int | None = None) -> int:
        """One round: due retries, reclaim, else read new; returns entries processed.

        Acks go out from the ack task every ACK_FLUSH_SEC (batched: one round trip for many
        entries), or here once a whole batch is waiting.
        """
        if len(self._unacked) >= self.batch:
            await self._flush_acks()
        await self._maybe_trim()
        entries = await self._due_retries()
        if not entries:
            entries = await self._maybe_reclaim()
        if not entries:
            entries = await self.stream.read_new(self.name, self.batch, self._block_ms(block_ms))
        for entry in entries:
            await self._process(entry)
        return len(entries)

    def _block_ms(self, requested: int | None) -> int:
        block = self.stream.config.read_block_ms if requested is None else requested
        if self._retry_due:
            wait = min(self._retry_due.values()) - self.stream.clock()
            block = min(block, max(1, int(wait * 1000)))
        reclaim_in = (
            self._last_reclaim + self.stream.config.heartbeat_interval_sec - anyio.current_time()
        )
        return max(1, min(block, int(reclaim_in * 1000) + 1))

    async def _flush_acks(self) -> None:
        if not self._unacked:
            return
        taken, self._unacked = self._unacked, []
        self._acking.update(taken)
        try:
            await self.stream.ack(taken)
        except BaseException:
            self._unacked = taken + self._unacked
            raise
        finally:
            self._acking.difference_update(taken)

    async def _ack_loop(self) -> None:
        """Ack handled entries promptly even while a long handler holds the loop.

        Event-driven: it sleeps until an entry is handled (no wake-ups while idle), then
        lets ACK_FLUSH_SEC of further entries gather into the same XACK."""
        while True:
            if not self._unacked:
                self._ack_wanted = anyio.Event()
                await self._ack_wanted.wait()
            await anyio.sleep(ACK_FLUSH_SEC)
            # on an outage the main loop notices too; these acks stay queued and go out later
            with contextlib.suppress(StateError):
                await self._flush_acks()

    async def _due_retries(self) -> list[Entry]:
        now = self.stream.clock()
        due = [i for i, t in self._retry_due.items() if t <= now]
        if not due:
            return []
        for entry_id in due:
            del self._retry_due[entry_id]
        return await self.stream.claim_own(self.name, due)

    async def _maybe_reclaim(self) -> list[Entry]:
        now = anyio.current_time()
        if now - self._last_reclaim < self.stream.config.heartbeat_interval_sec:
            return []
        self._last_reclaim = now
        entries = await self.stream.reclaim(self.name, self._lapses.take_from)
        if entries:
            self.counters.reclaimed += len(entries)
            self._log.info("reclaimed entries of lapsed consumers", count=len(entries))
        return entries

    async def _maybe_trim(self) -> None:
        now = anyio.current_time()
        if now - self._last_trim >= self._trim_interval:
            self._last_trim = now
            trimmed = await self.stream.trim()
            if trimmed:
                self._log.debug("trimmed acked entries past retention", count=trimmed)

    async def _recover_own(self) -> None:
        """Entries delivered to us whose reply was lost, or held by a previous incarnation."""
        # an entry whose ack is queued or in flight was handled already: never handle it twice
        held = set(self._unacked) | self._acking | set(self._retry_due)
        own = await self.stream.read_own_pending(self.name, RECOVER_COUNT)
        for entry in own:
            if entry.entry_id not in held:
                await self._process(entry)
        await self._flush_acks()

    # ------------------------------------------------------------------ one entry
    async def _process(self, entry: Entry) -> None:
        """The fault boundary of one entry: nothing it holds can stop the loop."""
        try:
            await self._handle_entry(entry)
        except Exception as exc:
            if is_service_fault(exc):
                raise  # the entry stays pending: handled again once the server is back
            # A fault that escaped the steps below (a bug met on hostile input): recorded
            # against this entry, once, and the loop goes on.
            self.counters.failed += 1
            await self._dead(entry, f"unhandled fault: {describe(exc)}", [])

    async def _handle_entry(self, entry: Entry) -> None:
        # Delivery count and backoff first, before the contents are read: an entry whose
        # decoding kills its consumer outright (out of memory) still ends in the dead letters.
        record = await self.stream.attempt_record(entry.entry_id) if entry.deliveries > 1 else None
        attempts = record.attempts if record is not None else []
        if record is not None and record.not_before > self.stream.clock():
            self._retry_due[entry.entry_id] = record.not_before  # reclaimed during its backoff
            return
        max_attempts = self.policy.max_attempts
        if entry.deliveries > max_attempts:
            reason = (
                f"delivered {entry.deliveries} times without completing "
                f"(retry.max_attempts = {max_attempts})"
            )
            await self._dead(entry, reason, attempts, self._decoded(entry, attempts))
            return
        if entry.raw is None:
            await self._dead(entry, "entry has no message field 'm' (malformed or deleted)", [])
            return
        try:
            message = decode(entry.raw, self.stream.config.max_entry_bytes)
        except MessageError as exc:
            await self._dead(entry, f"invalid envelope: {describe(exc)}", attempts)
            return
        delivery = Delivery(entry.entry_id, message, entry.deliveries, tuple(attempts))
        try:
            await self.handler(delivery)
        except Exception as exc:
            if is_service_fault(exc):
                raise
            if isinstance(exc, PERMANENT_ERRORS):
                self.counters.failed += 1
                await self._dead(entry, describe(exc), attempts, delivery)
            else:
                await self._failed(entry, exc, len(attempts) + 1, delivery)
            return
        self.counters.handled += 1
        self._unacked.append(entry.entry_id)
        if self._ack_wanted is not None:
            self._ack_wanted.set()

    def _decoded(self, entry: Entry, attempts: list[dict[str, object]]) -> Delivery | None:
        """The entry as a delivery for the ``on_dead`` hook, or None when it does not decode."""
        if entry.raw is None:
            return None
        try:
            message = decode(entry.raw, self.stream.config.max_entry_bytes)
        except MessageError:
            return None
        return Delivery(entry.entry_id, message, entry.deliveries, tuple(attempts))

    async def _failed(
        self, entry: Entry, exc: Exception, failures: int, delivery: Delivery
    ) -> None:
        self.counters.failed += 1
        error = describe(exc)
        delay = self.policy.delay(failures, self._rng)
        not_before = self.stream.clock() + delay
        record = await self.stream.record_failure(
            entry.entry_id, self.name, error, entry.deliveries, not_before
        )
        if failures >= self.policy.max_attempts:
            await self._dead(entry, error, record.attempts, delivery)
            return
        self._retry_due[entry.entry_id] = not_before
        self._log.warning(
            "handler failed; will retry", entry=entry.entry_id, error=error, delay_sec=delay
        )

    async def _dead(
        self,
        entry: Entry,
        reason: str,
        attempts: list[dict[str, object]],
        delivery: Delivery | None = None,
    ) -> None:
        if delivery is not None and self.on_dead is not None:
            # Before the dead letter: if the hook cannot reach the server (StateError, which
            # the loop waits out) the entry is still pending and comes this way again.
            try:
                await self.on_dead(delivery, reason)
            except Exception as exc:
                if is_service_fault(exc):
                    raise
                # a faulty hook must not stall the stream
                self._log.error("on_dead hook failed", entry=entry.entry_id, error=describe(exc))
        self.counters.dead_lettered += 1
        await self.stream.dead_letter(entry, reason, self.name, list(attempts))
        self._log.warning("entry moved to dead letters", entry=entry.entry_id, reason=reason)
