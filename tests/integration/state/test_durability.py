"""Acknowledged writes WAIT for a replica: against a real master and replica (Debian's
redis-server), a write that the replica has not confirmed is not reported done."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dsa110d.config import Config
from dsa110d.errors import ReplicationError
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.state.connection import Redis, connected
from dsa110d.state.keys import Keys
from dsa110d.state.streams import ReliableStream
from tests.conftest import make_config
from tests.integration.state.sentinelkit import PASSWORD, Cluster

pytestmark = pytest.mark.timeout(60)

WAIT_TIMEOUT_MS = 300
REPLICA_LAG_SEC = 2
"""How long the replica is made to stop answering (DEBUG SLEEP): well past the WAIT timeout."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path / "cluster")
    try:
        made.start_data_nodes()
        yield made
    finally:
        made.close()


def _config(tmp_path: Path, cluster: Cluster, **extra: object) -> Config:
    url = f"redis://:{PASSWORD}@127.0.0.1:{cluster.master_port}/0"
    return make_config(tmp_path, url, redis__wait_timeout_ms=WAIT_TIMEOUT_MS, **extra)


def _stream(client: Redis, config: Config) -> ReliableStream:
    keys = Keys(config.redis.namespace)
    return ReliableStream(
        client,
        keys,
        MessageType.HDF5_PROCESSING,
        "g",
        config.streams,
        config.retry,
    )


def _lag_replica(cluster: Cluster) -> threading.Thread:
    """The replica stops acknowledging for REPLICA_LAG_SEC (its event loop sleeps); returns
    once it sleeps (it no longer answers)."""
    replica = cluster.data_client(cluster.replica_port)
    replica.connection_pool.connection_kwargs["socket_timeout"] = REPLICA_LAG_SEC + 5
    sleeper = threading.Thread(
        target=lambda: replica.execute_command("DEBUG", "SLEEP", REPLICA_LAG_SEC),  # type: ignore[no-untyped-call]
        daemon=True,
    )
    sleeper.start()
    probe = redis.Redis(port=cluster.replica_port, password=PASSWORD, socket_timeout=0.1)
    while True:
        try:
            probe.ping()
        except redis.TimeoutError:
            return sleeper
        time.sleep(0.02)


@pytest.mark.anyio
async def test_a_publish_the_replica_has_not_confirmed_is_not_reported_done(
    tmp_path: Path, cluster: Cluster
) -> None:
    config = _config(tmp_path, cluster, redis__wait_replicas=1)
    message = new_message(MessageType.HDF5_PROCESSING, {"set_id": "x"}, Producer.here("t"))
    async with connected(config) as client:
        stream = _stream(client, config)
        assert await stream.publish(message, dedup_key="a") is not None  # replica in step
        sleeper = _lag_replica(cluster)
        with pytest.raises(ReplicationError, match="not confirmed by 1 replica"):
            await stream.publish(message, dedup_key="b")
        sleeper.join()


@pytest.mark.anyio
async def test_a_master_left_without_replicas_goes_on_without_waiting(
    tmp_path: Path, cluster: Cluster
) -> None:
    config = _config(tmp_path, cluster, redis__wait_replicas=1)
    cluster.procs["replica"].kill()
    cluster.procs["replica"].wait(10)
    master = cluster.data_client(cluster.master_port)
    while master.info("replication")["connected_slaves"]:  # type: ignore[index]
        pass  # the master notices the closed link at once
    message = new_message(MessageType.HDF5_PROCESSING, {"set_id": "x"}, Producer.here("t"))
    async with connected(config) as client:
        assert await _stream(client, config).publish(message) is not None


@pytest.mark.anyio
async def test_without_wait_replicas_a_plain_server_never_waits(
    tmp_path: Path, cluster: Cluster
) -> None:
    config = _config(tmp_path, cluster)  # no Sentinel: wait_replicas defaults to 0
    message = new_message(MessageType.HDF5_PROCESSING, {"set_id": "x"}, Producer.here("t"))
    async with connected(config) as client:
        sleeper = _lag_replica(cluster)
        assert await _stream(client, config).publish(message) is not None
        sleeper.join()
