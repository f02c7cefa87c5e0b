"""The alert engine on a real server: a simulated outage reaches a local webhook as fire,
repeat and resolve; a webhook that answers 500 stalls nothing; two engines raise one alert;
e-mail reaches a local SMTP server; every rule's facts are read from real state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from dsa110d.alerts.engine import AlertEngine
from dsa110d.config import Config
from dsa110d.state.alerts import AlertStore
from dsa110d.state.keys import Keys
from dsa110d.state.registry import Registry, RegistryEntry
from tests.conftest import make_config
from tests.integration.alerts.sinkservers import SMTPServer, WebhookServer

pytestmark = pytest.mark.anyio

FAST = {
    "ALERTS__INTERVAL_SEC": 0.1,
    "ALERTS__RESOLVE_AFTER_SEC": 0.4,
    "ALERTS__UNHEALTHY_FOR_SEC": 0.3,
    "ALERTS__REPEAT_INTERVAL_SEC": 0.8,
    "ALERTS__DISK_FREE_MIN_FRACTION": 0,  # the test machine's disk is not the subject
    "ALERTS__WEBHOOK__BASE_DELAY_SEC": 0.05,
}


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.close()


def fast_config(tmp_path: Path, url: str, **more: Any) -> Config:
    return make_config(tmp_path, url, **{**FAST, **more})


async def wait_until(check: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


def entry(health: str, service: str = "watcher", host: str = "obs1") -> RegistryEntry:
    return RegistryEntry(host, 7, service, health, "no heartbeat for 40 s (stuck?)", "t", "1")


async def stream_events(redis: aioredis.Redis, cfg: Config) -> list[str]:
    reply = await redis.xrange(Keys(cfg.redis.namespace).alerts())
    return [fields["event"] for _, fields in reply]


async def test_an_outage_reaches_the_webhook_as_fire_repeat_and_resolve(
    tmp_path: Path, server_url: str, redis: aioredis.Redis, hook: WebhookServer
) -> None:
    cfg = fast_config(tmp_path, server_url, ALERTS__WEBHOOK__URL=hook.url)
    keys = Keys(cfg.redis.namespace)
    registry = Registry(redis, keys)
    engine = AlertEngine(lambda: cfg, redis, host="daemon-a")
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run)
        began = time.monotonic()
        await registry.publish(entry("UNHEALTHY"), 30)
        await wait_until(lambda: "fire" in hook.events())
        # it waited for unhealthy_for_sec before firing
        assert hook.posts[0][0] - began >= cfg.alerts.unhealthy_for_sec
        await wait_until(lambda: "repeat" in hook.events())
        await registry.publish(entry("HEALTHY"), 30)  # the outage ends
        await wait_until(lambda: "resolve" in hook.events())
        tg.cancel_scope.cancel()
    events = hook.events()
    assert events[0] == "fire" and events[-1] == "resolve"
    assert events.count("fire") == 1 and events.count("resolve") == 1
    assert set(events[1:-1]) == {"repeat"}
    fired = hook.posts[0][1]
    assert fired["text"].startswith("[dsa110d FIRING critical] service_unhealthy: watcher on obs1")
    assert fired["fingerprint"] == "unhealthy:obs1:watcher"
    # the same history is on the dashboards' stream, in order
    assert await stream_events(redis, cfg) == events
    [record] = await AlertStore(redis, keys).records()
    assert record.status == "resolved" and record.sent == len(events) - 1


async def test_a_webhook_answering_500_stalls_nothing(
    tmp_path: Path, server_url: str, redis: aioredis.Redis
) -> None:
    broken = WebhookServer(status=500)
    cfg = fast_config(
        tmp_path, server_url, ALERTS__WEBHOOK__URL=broken.url, ALERTS__WEBHOOK__MAX_ATTEMPTS=3,
        ALERTS__SINK_QUEUE_SIZE=2, ALERTS__UNHEALTHY_FOR_SEC=0,
    )  # fmt: skip
    registry = Registry(redis, Keys(cfg.redis.namespace))
    for n in range(6):
        await registry.publish(entry("UNHEALTHY", f"service{n}"), 30)
    engine = AlertEngine(lambda: cfg, redis, host="daemon-a")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.sinks.run)
            passes = []
            for _ in range(5):
                started = time.monotonic()
                await engine.evaluate_once()
                passes.append(time.monotonic() - started)
            # every pass stayed quick although each POST fails and is retried
            assert max(passes) < 1.0, passes
            await wait_until(lambda: len(broken.posts) >= 3)
            tg.cancel_scope.cancel()
    finally:
        broken.close()
    assert engine.sinks.dropped > 0  # the bounded queue shed load instead of blocking
    # the stream sink never depended on the webhook: all six alerts fired there
    assert (await stream_events(redis, cfg)).count("fire") == 6


async def test_two_engines_on_one_server_raise_one_alert(
    tmp_path: Path, server_url: str, redis: aioredis.Redis, hook: WebhookServer
) -> None:
    cfg = fast_config(tmp_path, server_url, ALERTS__WEBHOOK__URL=hook.url,
                      ALERTS__UNHEALTHY_FOR_SEC=0, ALERTS__REPEAT_INTERVAL_SEC=0)  # fmt: skip
    registry = Registry(redis, Keys(cfg.redis.namespace))
    await registry.publish(entry("UNHEALTHY"), 30)
    engines = [AlertEngine(lambda: cfg, redis, host=h) for h in ("daemon-a", "daemon-b")]
    async with anyio.create_task_group() as tg:
        for engine in engines:
            tg.start_soon(engine.run)
        await wait_until(lambda: "fire" in hook.events())
        await anyio.sleep(0.5)  # both engines evaluate several more times
        await registry.remove("obs1", 7, "watcher")
        await wait_until(lambda: "resolve" in hook.events())
        await anyio.sleep(0.5)
        tg.cancel_scope.cancel()
    assert hook.events() == ["fire", "resolve"]
    assert await stream_events(redis, cfg) == ["fire", "resolve"]


async def test_new_candidates_are_one_info_notice_across_engines(
    tmp_path: Path, server_url: str, redis: aioredis.Redis, hook: WebhookServer
) -> None:
    cfg = fast_config(tmp_path, server_url, ALERTS__WEBHOOK__URL=hook.url)
    candidates = Keys(cfg.redis.namespace).candidates()
    engines = [AlertEngine(lambda: cfg, redis, host=h) for h in ("daemon-a", "daemon-b")]
    for engine in engines:
        assert await engine.evaluate_once() == []  # none yet: nothing to say
    await redis.zadd(candidates, {"J1": 1, "J2": 2, "J3": 3})
    sent = [e for engine in engines for e in await engine.evaluate_once()]
    assert [(e.event, e.severity, e.details["new"]) for e in sent] == [("notice", "info", 3)]
    await redis.zadd(candidates, {"J4": 4, "J5": 5})
    sent = [e for engine in engines for e in await engine.evaluate_once()]
    assert [e.summary for e in sent] == [
        "2 new variability candidates (5 in all; dsa110ctl candidates)"
    ]


async def test_alerts_are_mailed(tmp_path: Path, server_url: str, redis: aioredis.Redis) -> None:
    smtp = SMTPServer()
    cfg = fast_config(
        tmp_path, server_url, ALERTS__EMAIL__HOST="127.0.0.1", ALERTS__EMAIL__PORT=smtp.port,
        ALERTS__EMAIL__RECIPIENTS="[ops@example.org]", ALERTS__UNHEALTHY_FOR_SEC=0,
    )  # fmt: skip
    await Registry(redis, Keys(cfg.redis.namespace)).publish(entry("UNHEALTHY"), 30)
    engine = AlertEngine(lambda: cfg, redis, host="daemon-a")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.run)
            await wait_until(lambda: engine.sinks.sent["email"] == 1)
            tg.cancel_scope.cancel()
    finally:
        smtp.close()
    assert "Subject: [dsa110d FIRING critical] service_unhealthy" in smtp.messages[0]
    assert "To: ops@example.org" in smtp.messages[0]
    assert engine.sinks.sent["email"] == 1


async def test_rules_read_streams_sets_and_crashes_from_real_state(
    tmp_path: Path, server_url: str, redis: aioredis.Redis
) -> None:
    cfg = fast_config(tmp_path, server_url, ALERTS__QUEUE_LAG_SEC=600)
    keys = Keys(cfg.redis.namespace)
    now = time.time()
    old_ms = int((now - 3600) * 1000)
    stream = keys.stream("HDF5_PROCESSING")
    await redis.xadd(stream, {"m": "{}"}, id=f"{old_ms}-0")  # waiting an hour, undelivered
    await redis.xgroup_create(stream, "processor", id="0")
    await redis.xadd(keys.dead_letters("MS_PROCESSING"), {"reason": "x"})  # died just now
    await redis.zadd(keys.set_index(), {"2026-11-26T00:00:00": now - 3600})
    await redis.hset(keys.set_record("2026-11-26T00:00:00"), mapping={"state": "collecting"})  # type: ignore[misc]
    await redis.zadd(keys.set_index(), {"2026-11-26T00:05:00": now - 3600})
    await redis.hset(keys.set_record("2026-11-26T00:05:00"), mapping={"state": "complete"})  # type: ignore[misc]
    engine = AlertEngine(lambda: cfg, redis, lambda: 5, host="daemon-a", pid=99)
    sent = {e.fingerprint: e for e in await engine.evaluate_once()}
    assert set(sent) == {
        f"queue-lag:{stream}",
        f"dead-letters:{keys.dead_letters('MS_PROCESSING').removesuffix(':dead')}",
        "incomplete-sets",
        "restart-intensity:daemon-a:99",
    }
    assert sent["incomplete-sets"].details["sets"] == ["2026-11-26T00:00:00"]


async def test_a_mostly_flagged_block_is_noticed_once(
    tmp_path: Path, server_url: str, redis: aioredis.Redis
) -> None:
    """A block record whose flag QA passed flagging.alert_flag_fraction: one notice, however
    many daemons and passes see it (the record is written as the processor's commit leaves it)."""
    cfg = fast_config(tmp_path, server_url)
    keys = Keys(cfg.redis.namespace)
    qa = {"flag": {"flag_fraction": 0.93, "status": "mostly_flagged", "bad_antennas": "3"}}
    for block_id, fields in {
        "2026-03-20T08:00:00": {"qa": json.dumps(qa)},
        "2026-03-20T09:00:00": {"qa": json.dumps({"flag": {"flag_fraction": 0.01}})},
    }.items():
        record = {"start": 0, "end": 3600, "state": "processed", "version": 1, **fields}
        await redis.hset(keys.block_record(block_id), mapping=record)  # type: ignore[misc]
        await redis.zadd(keys.block_index(), {block_id: 0})
    first = AlertEngine(lambda: cfg, redis, host="daemon-a")
    second = AlertEngine(lambda: cfg, redis, host="daemon-b")
    events = [*(await first.evaluate_once()), *(await second.evaluate_once())]
    events += await first.evaluate_once()
    flagged = [e for e in events if e.rule == "block_flagged"]
    assert [e.fingerprint for e in flagged] == ["block_flagged:2026-03-20T08:00:00:v1"]
    assert flagged[0].event == "notice" and "93% flagged" in flagged[0].summary
