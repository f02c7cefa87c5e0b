"""Fuzz of the consumer's fault boundary, at unit speed (fakeredis; the real server's share is
in tests/integration/state/test_consumer_fuzz.py).

Invariants, whatever the entries hold and whatever the handler raises: the loop never raises
(no outage, no crash), every entry ends exactly once either handled or in the dead letters
with a one-line reason, a good entry beside poison is handled exactly once, nothing is left
pending.
"""

from __future__ import annotations

import itertools
import time

import pytest
from fakeredis import FakeAsyncRedis
from hypothesis import given
from hypothesis import strategies as st

from dsa110d.config import load_config
from dsa110d.errors import (
    REASON_MAX_CHARS,
    LeaseLostError,
    MessageError,
    PathOutsideRootsError,
    ServerUnavailableError,
    is_service_fault,
)
from dsa110d.messages import MessageType, decode
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import Delivery
from dsa110d.state.streams import ReliableStream
from tests.conftest import SERVICES_YAML
from tests.fuzzkit import ENTRY_LIMIT, envelope, fuzz_settings, one_line, raw_entries

pytestmark = pytest.mark.anyio

CONFIG = load_config(SERVICES_YAML, "testing", {})
REASON_LIMIT = REASON_MAX_CHARS  # a dead letter's reason is one bounded line
NO_FIELD = b"__no_m_field__"  # stands for an entry written without the message field


def leap_clock() -> itertools.count[float]:
    """A wall clock that leaps an hour per reading: every backoff is over by the next round."""
    return itertools.count(time.time(), 3600.0)


async def make_stream() -> ReliableStream:
    redis = FakeAsyncRedis(decode_responses=True)  # as in production: a decoding client
    clock = leap_clock()
    stream = ReliableStream(
        redis,
        Keys("fuzz"),
        MessageType.HDF5_PROCESSING,
        "workers",
        CONFIG.streams,
        CONFIG.retry,
        clock=lambda: next(clock),
    )
    await stream.ensure_group()
    return stream


async def drain(consumer: StreamConsumer) -> None:
    """Rounds until two in a row find nothing (batch=1: each round acks the previous entry;
    the leaping clock makes every retry due by the next round)."""
    idle = 0
    for _ in range(200):
        idle = 0 if await consumer.poll_once(block_ms=1) else idle + 1
        if idle == 2:
            return
    raise AssertionError("the consumer did not drain")


def decodes(raw: bytes) -> bool:
    try:
        decode(raw, ENTRY_LIMIT)
    except MessageError:
        return False
    return True


@fuzz_settings(500)
@given(poison=st.lists(raw_entries() | st.just(NO_FIELD), min_size=1, max_size=3))
async def test_poison_entries_end_in_the_dead_letters_and_their_neighbours_are_handled_once(
    poison: list[bytes],
) -> None:
    stream = await make_stream()
    good = envelope(n=-1)
    raws = [good, *poison, good]
    ids = []
    for raw in raws:
        if raw == NO_FIELD:
            ids.append(str(await stream.redis.xadd(stream.name, {"other": "field"})))
        else:
            ids.append(await stream.publish_raw(raw))
    handled: list[str] = []

    async def handler(delivery: Delivery) -> None:
        handled.append(delivery.entry_id)

    consumer = StreamConsumer(stream, "c1", handler, batch=1)
    await drain(consumer)

    ok = [i for i, raw in zip(ids, raws, strict=True) if raw != NO_FIELD and decodes(raw)]
    assert handled == ok  # in order, each exactly once; both good neighbours among them
    letters = await stream.dead_letters()
    assert sorted(letter.entry_id for letter in letters) == sorted(set(ids) - set(ok))
    assert all(one_line(letter.reason, REASON_LIMIT) for letter in letters)
    stats = await stream.stats()
    assert stats.pending == 0 and stats.undelivered == 0
    assert consumer.counters.outages == 0


HANDLER_FAULTS: list[Exception] = [
    ValueError("bad\nvalue \x1b[31m"),
    KeyError("missing"),
    RecursionError("maximum recursion depth exceeded"),
    MemoryError(),
    ZeroDivisionError("division by zero"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    RuntimeError("x" * 100_000),
    LeaseLostError("lease of set s lost"),
    MessageError("payload without a set id"),
    PathOutsideRootsError("/etc/passwd is outside the data roots"),
]


@fuzz_settings(300)
@given(
    faults=st.lists(st.none() | st.sampled_from(HANDLER_FAULTS), min_size=1, max_size=4),
    recovers=st.booleans(),
)
async def test_any_handler_fault_is_recorded_against_its_entry_and_the_loop_goes_on(
    faults: list[Exception | None], recovers: bool
) -> None:
    stream = await make_stream()
    ids = [await stream.publish_raw(envelope(n=n)) for n in range(len(faults))]
    calls: dict[str, int] = {}

    async def handler(delivery: Delivery) -> None:
        calls[delivery.entry_id] = calls.get(delivery.entry_id, 0) + 1
        fault = faults[delivery.message.payload["n"]]
        if fault is not None and not (recovers and delivery.deliveries > 1):
            raise fault

    consumer = StreamConsumer(stream, "c1", handler, batch=1)
    await drain(consumer)

    letters = {letter.entry_id: letter for letter in await stream.dead_letters()}
    for entry_id, fault in zip(ids, faults, strict=True):
        permanent = isinstance(fault, MessageError | PathOutsideRootsError)
        if fault is None or (recovers and not permanent):
            assert entry_id not in letters
        else:
            assert one_line(letters[entry_id].reason, REASON_LIMIT)
            expected = 1 if permanent else CONFIG.retry.max_attempts
            assert calls[entry_id] == expected  # recorded once per attempt, then dead
    assert (await stream.stats()).pending == 0 and consumer.counters.outages == 0


async def test_a_service_fault_in_the_handler_leaves_the_boundary_and_the_entry_pending() -> None:
    stream = await make_stream()
    await stream.publish_raw(envelope(n=0))
    fault = ServerUnavailableError("cannot reach the state server at test")
    assert is_service_fault(fault)

    async def handler(delivery: Delivery) -> None:
        raise fault

    consumer = StreamConsumer(stream, "c1", handler, batch=1)
    with pytest.raises(ServerUnavailableError):
        await consumer.poll_once(block_ms=1)
    assert (await stream.stats()).pending == 1 and await stream.dead_letters() == []
