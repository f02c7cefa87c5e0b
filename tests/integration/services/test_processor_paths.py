"""Trust nothing in a message: every path-bearing message whose paths resolve outside the data
roots goes straight to the dead letters with the reason, and no file is touched."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from dsa110d.config import Config
from dsa110d.contracts import BlockProcessed, ChunkConverted, SetAnnounced
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.state.connection import Redis
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.keys import Keys
from dsa110d.state.sets import Sets, SetState
from tests.integration.services.processorkit import (
    drain,
    land_and_announce,
    processor_config,
    set_files,
)

pytestmark = pytest.mark.anyio
SET_ID = "2026-03-20T06:00:00"


async def _no_worker(*args: object, **kwargs: object) -> object:
    raise AssertionError("a worker job was started for a message that should be refused")


@pytest.fixture
def cfg(tmp_path: Path, server_url: str, config: Config, sim: Any) -> Config:
    return processor_config(tmp_path, server_url, sim[1], redis__namespace=config.redis.namespace)


@pytest.fixture
def outside(tmp_path: Path, sim: Any) -> list[Path]:
    """A whole set in a directory that is not a data root."""
    where = tmp_path / "outside"
    where.mkdir()
    return [Path(shutil.copy2(f, where / f.name)) for f in set_files(sim[0], 0)]


def _digest(paths: list[Path]) -> list[tuple[str, int]]:
    return [(hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in paths]


async def _refused(handler: MSProcessingHandler, kind: MessageType, payload: dict[str, Any]) -> str:
    """Publish one message, let the processor consume it; the dead letter's reason."""
    handle = (
        handler.handle_set if kind is MessageType.HDF5_PROCESSING else handler.handle_ms_message
    )
    stream = handler.hdf5_stream if kind is MessageType.HDF5_PROCESSING else handler.ms_stream
    await stream.publish(new_message(kind, payload, Producer.here("test")))
    await drain(StreamConsumer(stream, "p1", handle))
    stats = await stream.stats()
    assert stats.pending == 0 and stats.dead_letters == 1
    (letter,) = await stream.dead_letters()
    assert letter.attempts == []  # straight to the dead letters: no retries
    return letter.reason


def _set_payload(paths: list[str]) -> dict[str, Any]:
    return SetAnnounced.of(SET_ID, dict(enumerate(paths)), None, None, 16, False).to_payload()


async def test_a_set_whose_files_lie_outside_the_roots_is_dead_lettered_untouched(
    cfg: Config, redis: Redis, outside: list[Path]
) -> None:
    before = _digest(outside)
    handler = MSProcessingHandler(cfg, redis, _no_worker)
    await handler.start()
    reason = await _refused(
        handler, MessageType.HDF5_PROCESSING, _set_payload([str(p) for p in outside])
    )
    assert "outside the data roots" in reason and str(outside[0]) in reason
    assert "outside the data roots" in reason
    assert _digest(outside) == before
    assert list(cfg.paths.ms_dir.iterdir()) == []


async def test_a_symlink_in_incoming_that_escapes_the_roots_is_refused(
    cfg: Config, redis: Redis, outside: list[Path]
) -> None:
    links = []
    for target in outside:
        link = cfg.paths.incoming_dir / target.name
        os.symlink(target, link)
        links.append(link)
    handler = MSProcessingHandler(cfg, redis, _no_worker)
    await handler.start()
    reason = await _refused(
        handler, MessageType.HDF5_PROCESSING, _set_payload([str(p) for p in links])
    )
    assert f"resolves to {outside[0]}" in reason
    assert list(cfg.paths.ms_dir.iterdir()) == []


async def test_a_dotdot_path_out_of_incoming_is_refused(
    cfg: Config, redis: Redis, outside: list[Path]
) -> None:
    sneaky = [str(cfg.paths.incoming_dir / ".." / "outside" / p.name) for p in outside]
    handler = MSProcessingHandler(cfg, redis, _no_worker)
    await handler.start()
    reason = await _refused(handler, MessageType.HDF5_PROCESSING, _set_payload(sneaky))
    assert "payload.files[0]" in reason and "is outside" in reason  # one bounded line


async def test_a_set_id_that_would_name_an_ms_elsewhere_is_refused(
    cfg: Config, redis: Redis, sim: Any
) -> None:
    landed = [Path(shutil.copy2(f, cfg.paths.incoming_dir / f.name)) for f in set_files(sim[0], 0)]
    payload = _set_payload([str(p) for p in landed])
    payload["set_id"] = "../../etc/x"
    handler = MSProcessingHandler(cfg, redis, _no_worker)
    await handler.start()
    reason = await _refused(handler, MessageType.HDF5_PROCESSING, payload)
    assert "is not a set id" in reason


async def test_a_refused_set_is_marked_failed_on_its_record(
    cfg: Config, redis: Redis, sim: Any, outside: list[Path]
) -> None:
    await land_and_announce(cfg, redis, set_files(sim[0], 0))  # a real record, then a forgery
    handler = MSProcessingHandler(cfg, redis, _no_worker)
    await handler.start()
    await redis.delete(handler.hdf5_stream.name)  # only the forged message remains
    await handler.start()
    await _refused(handler, MessageType.HDF5_PROCESSING, _set_payload([str(p) for p in outside]))
    record = await Sets(redis, Keys(cfg.redis.namespace)).get(SET_ID)
    assert record is not None and record.state is SetState.FAILED


async def test_a_chunk_message_with_an_ms_outside_the_roots_is_refused(
    cfg: Config, redis: Redis, tmp_path: Path
) -> None:
    fake = tmp_path / "elsewhere" / f"{SET_ID}.ms"
    fake.mkdir(parents=True)
    handler = MSProcessingHandler(cfg, redis, _no_worker)
    await handler.start()
    payload = ChunkConverted(SET_ID, SET_ID, str(fake), 0.0, 309.0, 0.6).to_payload()
    reason = await _refused(handler, MessageType.MS_PROCESSING, payload)
    assert str(fake) in reason and "outside the data roots" in reason
    assert await handler.blocks.chunk(SET_ID) is None
    assert fake.is_dir() and list(fake.iterdir()) == []


async def test_a_block_message_with_a_result_outside_the_roots_is_refused(
    cfg: Config, redis: Redis, tmp_path: Path
) -> None:
    handler = MSProcessingHandler(cfg, redis, _no_worker)
    await handler.start()
    payload = BlockProcessed(
        SET_ID, 1, {"photometry": "/etc/passwd"}, (), (), (), 0.0, 3600.0
    ).to_payload()
    reason = await _refused(handler, MessageType.MS_PROCESSING, payload)
    assert "/etc/passwd" in reason
