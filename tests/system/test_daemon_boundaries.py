"""The daemon as a process keeps running whatever one input holds: malformed control
messages (PUBLISHed by anyone who may write to the server) and a webhook that answers garbage
or is configured without a scheme. Each is recorded against that input (``control_rejected``,
``alert_webhook_failed``), never counted as a crash, and never prints the webhook URL."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import anyio
import pytest
import redis.asyncio as aioredis

from dsa110d.config import load_config
from dsa110d.messages import MessageType, Producer, encode, new_message
from dsa110d.state.connection import connected
from dsa110d.state.control import ControlChannel, ControlCommand
from dsa110d.state.keys import Keys
from dsa110d.state.registry import Registry
from tests.integration.alerts.sinkservers import GarbageServer
from tests.system.daemonkit import SERVICES_YAML, Daemon, wait_for

SECRET = "secret-token"


def malformed_control_messages() -> list[bytes]:
    """One of each kind of fault a control message can carry."""
    producer = Producer("elsewhere", 1, "intruder")
    envelope = json.loads(encode(new_message(MessageType.SYSTEM, {"action": "pause"}, producer)))
    return [
        b"\xff\xfe\x00 not UTF-8",
        b"[" * 50_000 + b"]" * 50_000,  # over the size limit
        b'{"payload": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",  # deep enough for RecursionError
        b"{not json",
        b"null",
        json.dumps({**envelope, "payload": {"action": ["restart"], "pid": True}}).encode(),
        json.dumps({**envelope, "type": "HDF5_PROCESSING"}).encode(),
        json.dumps({**envelope, "id": "x" * 10_000}).encode(),
    ]


@pytest.mark.timeout(120)
def test_malformed_control_messages_are_rejected_and_the_daemon_keeps_listening(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon]
) -> None:
    env = daemon_env()
    config = load_config(SERVICES_YAML, "testing", env)
    keys = Keys(config.redis.namespace)
    daemons.append(daemon := Daemon(env, "steady"))
    daemon.wait_event("ready", timeout=30)
    bad = malformed_control_messages()

    async def publish_all() -> None:
        client = aioredis.Redis.from_url(env["DSA110__REDIS__URL"])  # sends bytes as they are
        try:
            for raw in bad:
                assert await client.publish(keys.control(), raw) == 1
        finally:
            await client.aclose()

    async def pause_and_read() -> str:
        async with connected(config) as redis:
            command = ControlCommand("pause", host=socket.gethostname(), service="steady")
            await ControlChannel(redis, keys).send(command)
            await anyio.sleep(0.5)
            (entry,) = await Registry(redis, keys).entries()
            return entry.state

    anyio.run(publish_all)
    wait_for(lambda: len(daemon.events("control_rejected")) == len(bad), timeout=15)
    assert daemon.proc.poll() is None
    assert anyio.run(pause_and_read) == "paused"  # still listening, and acting
    rejected = daemon.events("control_rejected")
    assert all("\n" not in str(r["error"]) and len(str(r["error"])) <= 300 for r in rejected)
    assert not daemon.events("service_crashed") and not daemon.events("control_error")
    assert daemon.stop() == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("endpoint", ["garbage", "no-scheme"])
def test_a_broken_webhook_leaves_the_daemon_running_and_never_prints_its_url(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], endpoint: str
) -> None:
    garbage = GarbageServer()
    try:
        url = garbage.url if endpoint == "garbage" else f"hooks.example.invalid/{SECRET}"
        env = daemon_env(
            DSA110__ALERTS__WEBHOOK__URL=url,
            DSA110__ALERTS__WEBHOOK__MAX_ATTEMPTS="2",
            DSA110__ALERTS__WEBHOOK__BASE_DELAY_SEC="0.05",
            DSA110__ALERTS__DISK_FREE_MIN_FRACTION="0.999999",  # every disk is "full"
            DSA110__ALERTS__INTERVAL_SEC="0.2",
        )
        daemons.append(daemon := Daemon(env, "steady"))
        daemon.wait_event("ready", timeout=30)
        failed = daemon.wait_event("alert_webhook_failed", timeout=30)
        time.sleep(1.5)  # several more passes and deliveries
        assert daemon.proc.poll() is None
        assert "\n" not in str(failed["error"])
        if endpoint == "garbage":
            assert garbage.connections >= 2 and "bad reply" in str(failed["error"])
        else:
            assert "not an http:// or https:// URL" in str(failed["error"])
        assert not daemon.events("service_crashed") and not daemon.events("alerts_error")
        assert daemon.stop() == 0
        assert SECRET not in "\n".join(daemon.lines)  # stdout and stderr both
    finally:
        garbage.close()
