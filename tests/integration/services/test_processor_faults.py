"""The processor under faults: it keeps beating while it waits on another holder, never
overwrites the record of a set another holder took over, and a bad message cannot fail a set
that is still collecting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from dsa110d.config import Config
from dsa110d.contracts import SetAnnounced
from dsa110d.errors import ConfigError, LeaseLostError, PathOutsideRootsError
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.services.processor_jobs import Converted
from dsa110d.state.connection import Redis
from dsa110d.state.leases import Leases
from dsa110d.state.sets import NewFile, SetRecord, Sets, SetState
from dsa110d.state.stream_entries import Delivery
from tests.conftest import make_config
from tests.integration.services.processorkit import set_consumer

pytestmark = pytest.mark.anyio
SET_ID = "2026-03-20T06:00:00"


@pytest.fixture
def cfg(tmp_path: Path, server_url: str, config: Config) -> Config:
    made = make_config(
        tmp_path,
        server_url,
        redis__namespace=config.redis.namespace,
        services__ms_processor__processing_timeout_sec=1.0,
        leases__renew_interval_sec=0.1,
        leases__ttl_sec=5,
    )
    made.paths.incoming_dir.mkdir(parents=True, exist_ok=True)
    return made


async def _no_worker(*args: object, **kwargs: object) -> object:
    raise AssertionError("no worker job expected")


async def _set_in(cfg: Config, redis: Redis, state: SetState) -> tuple[Sets, Path]:
    """A one-subband set record in ``state`` (collecting or queued) and its file."""
    path = cfg.paths.incoming_dir / f"{SET_ID}_sb00.hdf5"
    path.write_bytes(b"")
    sets = Sets(redis, MSProcessingHandler(cfg, redis, _no_worker).keys)
    new = NewFile(SET_ID, 0, str(path), 0.0, 2460000.5)
    await sets.add_file(new, expected=2 if state is SetState.COLLECTING else 1)
    if state is SetState.QUEUED:
        assert await sets.claim(SET_ID, partial=False) is not None
    return sets, path


def _delivery(paths: list[str]) -> Delivery:
    payload = SetAnnounced.of(SET_ID, dict(enumerate(paths)), None, None, 1, False).to_payload()
    message = new_message(MessageType.HDF5_PROCESSING, payload, Producer.here("test"))
    return Delivery("1-0", message, 1)


async def test_waiting_for_another_holder_keeps_the_heartbeat(cfg: Config, redis: Redis) -> None:
    beats: list[float] = []
    handler = MSProcessingHandler(cfg, redis, _no_worker, beat=lambda: beats.append(1.0))
    assert await Leases(redis, handler.keys, cfg.leases).acquire(f"set:{SET_ID}", "other")
    await handler._wait_for_other_holder(f"set:{SET_ID}")  # times out after 1 s
    assert len(beats) >= 5


async def test_a_processor_that_lost_its_lease_leaves_the_new_holders_set_alone(
    cfg: Config, redis: Redis
) -> None:
    sets, path = await _set_in(cfg, redis, SetState.QUEUED)
    leases = Leases(redis, Sets(redis, sets.keys).keys, cfg.leases)

    async def taken_over(*args: object, **kwargs: object) -> dict[str, Any]:
        # Our lease lapses mid-conversion and another processor takes the set over.
        await redis.delete(sets.keys.lease(f"set:{SET_ID}"))
        assert await leases.acquire(f"set:{SET_ID}", "other")
        assert await sets.mark(SET_ID, SetState.CONVERTING)
        return Converted(str(path) + ".ms", False, 0.0, 1.0, 0.0, 0.1).to_json()

    handler = MSProcessingHandler(cfg, redis, taken_over)
    with pytest.raises(LeaseLostError):
        await handler.handle_set(_delivery([str(path)]))
    record = await sets.get(SET_ID)
    assert record is not None and record.state is SetState.CONVERTING  # the other holder's
    assert await sets.mark(SET_ID, SetState.CONVERTED)


async def test_a_converted_mark_stands_even_after_a_failed_mark(cfg: Config, redis: Redis) -> None:
    sets, _ = await _set_in(cfg, redis, SetState.QUEUED)
    assert await sets.mark(SET_ID, SetState.FAILED, "lost holder's last attempt")
    assert await sets.mark(SET_ID, SetState.CONVERTED)


async def _after_a_bad_message(
    cfg: Config, redis: Redis, tmp_path: Path, state: SetState
) -> tuple[Sets, SetRecord]:
    """A set in ``state``, then a message for it naming a file outside the roots (refused):
    the set's record afterwards."""
    sets, _ = await _set_in(cfg, redis, state)
    handler = MSProcessingHandler(cfg, redis, _no_worker)
    with pytest.raises(PathOutsideRootsError):
        await handler.handle_set(_delivery([str(tmp_path / "elsewhere.hdf5")]))
    record = await sets.get(SET_ID)
    assert record is not None
    return sets, record


async def test_a_bad_message_cannot_fail_a_set_still_collecting(
    cfg: Config, redis: Redis, tmp_path: Path
) -> None:
    sets, record = await _after_a_bad_message(cfg, redis, tmp_path, SetState.COLLECTING)
    assert record.state is SetState.COLLECTING
    assert SET_ID in await redis.zrange(sets.keys.set_open(), 0, -1)


async def test_a_bad_message_for_an_announced_set_fails_it(
    cfg: Config, redis: Redis, tmp_path: Path
) -> None:
    _, record = await _after_a_bad_message(cfg, redis, tmp_path, SetState.QUEUED)
    assert record.state is SetState.FAILED


async def test_mark_with_from_states_refuses_other_sources(cfg: Config, redis: Redis) -> None:
    sets, _ = await _set_in(cfg, redis, SetState.QUEUED)
    assert not await sets.mark(SET_ID, SetState.FAILED, "x", from_states=(SetState.COLLECTING,))
    record = await sets.get(SET_ID)
    assert record is not None and record.state is SetState.QUEUED
    with anyio.fail_after(5):
        assert await sets.mark(SET_ID, SetState.FAILED, "x", from_states=(SetState.QUEUED,))


async def test_an_announcement_delivered_too_often_fails_its_set(cfg: Config, redis: Redis) -> None:
    """Consumers kept dying on it: the consumer dead-letters it without calling the handler,
    and its on_dead hook marks the set failed instead of leaving it queued for ever."""
    sets, path = await _set_in(cfg, redis, SetState.QUEUED)
    handler = MSProcessingHandler(cfg, redis, _no_worker)
    await handler.start()
    stream = handler.hdf5_stream
    await stream.publish(_delivery([str(path)]).message)
    (entry,) = await stream.read_new("p1", 10, 1)
    many = cfg.retry.max_attempts + 1
    await redis.xclaim(stream.name, stream.group, "p1", 0, [entry.entry_id], retrycount=many)
    await set_consumer(handler, "p1")._recover_own()
    assert (await stream.stats()).dead_letters == 1
    record = await sets.get(SET_ID)
    assert record is not None and record.state is SetState.FAILED
    assert "dead-lettered: delivered" in record.errors[-1].reason


@pytest.mark.parametrize("key", ["ms_dir", "results_dir"])
async def test_an_output_directory_that_cannot_be_created_is_one_line_naming_it(
    tmp_path: Path, server_url: str, config: Config, redis: Redis, key: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    made = make_config(
        tmp_path,
        server_url,
        redis__namespace=config.redis.namespace,
        **{f"paths__{key}": blocker / "out"},
    )
    handler = MSProcessingHandler(made, redis, _no_worker)
    with pytest.raises(ConfigError, match=rf"^paths\.{key}: cannot create .*a-file/out") as exc:
        await handler.start()
    assert "\n" not in str(exc.value)
