"""``queues`` and ``dlq`` on a real server: statistics per group, dead letters listed, shown,
replayed and purged, in-process and through the program."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.operations.queues import (
    DeadLetterNotFound,
    list_dead_letters,
    purge_dead_letters,
    queue_stats,
    replay_dead_letters,
    show_dead_letter,
)
from dsa110d.state.keys import Keys
from dsa110d.state.streams import ReliableStream
from tests.integration.operations.ctlkit import ctl

pytestmark = pytest.mark.anyio
PRODUCER = Producer("corr01", 1, "tests")


def stream(config: Config, redis: aioredis.Redis, kind: MessageType) -> ReliableStream:
    keys = Keys(config.redis.namespace)
    return ReliableStream(redis, keys, kind, "processor", config.streams, config.retry)


async def poison(config: Config, redis: aioredis.Redis, count: int) -> ReliableStream:
    """``count + 1`` HDF5 messages: ``count`` dead-lettered, one left pending."""
    hdf5 = stream(config, redis, MessageType.HDF5_PROCESSING)
    await hdf5.ensure_group()
    for number in range(count + 1):
        message = new_message(MessageType.HDF5_PROCESSING, {"set": f"s{number}"}, PRODUCER)
        await hdf5.publish(message)
    entries = await hdf5.read_new("proc-1", count + 1, None)
    attempts = [{"at": 1764158400.0, "consumer": "proc-1", "delivery": 1, "error": "boom"}]
    for entry in entries[:count]:
        await hdf5.dead_letter(entry, "InputFileError: truncated file", "proc-1", attempts)
    return hdf5


async def test_queue_stats_cover_every_type_and_group(
    config: Config, redis: aioredis.Redis
) -> None:
    await poison(config, redis, 2)
    rows = {(r.message_type, r.group): r for r in await queue_stats(config)}
    assert {t for t, _ in rows} == {t.value for t in MessageType}
    hdf5 = rows[("HDF5_PROCESSING", "processor")]
    assert (hdf5.length, hdf5.pending, hdf5.undelivered, hdf5.dead_letters) == (3, 1, 0, 2)
    assert hdf5.consumers == 1
    assert hdf5.oldest_pending_age_sec is not None and hdf5.oldest_pending_age_sec < 60
    assert rows[("MS_PROCESSING", "-")].length == 0


async def test_dead_letters_list_show_replay_purge(config: Config, redis: aioredis.Redis) -> None:
    hdf5 = await poison(config, redis, 3)
    letters = await list_dead_letters(config)
    assert len(letters) == 3
    assert {d.message_type for d in letters} == {"HDF5_PROCESSING"}
    one = await show_dead_letter(config, letters[0].dead_id)
    assert one.reason == "InputFileError: truncated file"
    assert one.attempts[0]["error"] == "boom"
    assert json.loads(one.raw)["payload"] == {"set": "s0"}
    with pytest.raises(DeadLetterNotFound):
        await show_dead_letter(config, "1-1")

    seen: list[tuple[int, int]] = []
    replayed = await replay_dead_letters(
        config, letters[0].dead_id, progress=lambda d, t: seen.append((d, t))
    )
    assert [r.dead_id for r in replayed] == [letters[0].dead_id]
    assert seen == [(1, 1)]
    assert (await hdf5.stats()).undelivered == 1  # back on the stream for the group
    assert await purge_dead_letters(config, progress=lambda d, t: seen.append((d, t))) == 2
    assert seen[-2:] == [(1, 2), (2, 2)]
    assert await list_dead_letters(config) == []


async def test_dlq_through_the_program(config: Config, redis: aioredis.Redis) -> None:
    await poison(config, redis, 2)
    listed = ctl(config, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    ids = [d["dead_id"] for d in json.loads(listed.stdout)]
    assert len(ids) == 2
    shown = ctl(config, "dlq", "show", ids[1])
    assert shown.returncode == 0 and "truncated file" in shown.stdout
    assert ctl(config, "dlq", "show", "not-an-id").returncode == 2
    assert ctl(config, "dlq", "show", "1-1").returncode == 1
    assert ctl(config, "dlq", "replay").returncode == 2  # neither ID nor --all
    replay = ctl(config, "dlq", "replay", "--all", "--json")
    assert replay.returncode == 0, replay.stderr
    assert sorted(r["dead_id"] for r in json.loads(replay.stdout)) == sorted(ids)
    queues = json.loads(ctl(config, "queues", "--json").stdout)
    hdf5 = next(q for q in queues if q["message_type"] == "HDF5_PROCESSING")
    assert (hdf5["dead_letters"], hdf5["undelivered"]) == (0, 2)
    await poison(config, redis, 1)
    assert ctl(config, "dlq", "purge").returncode == 2  # all of them needs --yes off a terminal
    purge = ctl(config, "dlq", "purge", "--yes")
    assert purge.returncode == 0 and "1 dead letters purged" in purge.stdout


HOSTILE = "bad [/x] [bold]markup\x1b[2J\x1b]0;owned\x07 \u202eend"


async def test_dlq_prints_untrusted_text_as_text_without_terminal_escapes(
    config: Config, redis: aioredis.Redis
) -> None:
    hdf5 = stream(config, redis, MessageType.HDF5_PROCESSING)
    await hdf5.ensure_group()
    await hdf5.publish(new_message(MessageType.HDF5_PROCESSING, {"set": HOSTILE}, PRODUCER))
    entries = await hdf5.read_new("proc-1", 1, None)
    attempts = [{"at": 1764158400.0, "consumer": "proc-1", "delivery": 1, "error": HOSTILE}]
    await hdf5.dead_letter(entries[0], HOSTILE, "proc-1", attempts)
    listed = ctl(config, "dlq", "list")
    assert listed.returncode == 0, listed.stderr  # rich markup in a reason crashed the table
    assert "bad [/x] [bold]markup[2J]0;owned end" in listed.stdout
    dead_id = json.loads(ctl(config, "dlq", "list", "--json").stdout)[0]["dead_id"]
    shown = ctl(config, "dlq", "show", dead_id)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("bad [/x] [bold]markup[2J]0;owned end") == 2  # reason, attempt
    for output in (listed.stdout, shown.stdout):
        assert not {"\x1b", "\x07", "\u202e"} & set(output)
