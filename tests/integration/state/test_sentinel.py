"""The state layer behind Sentinel, everything over TLS with passwords: a real master, replica
and three sentinels (TLS only, Debian's redis-server and redis-sentinel). The client finds the
master through the sentinels with their own password, its acknowledged writes are confirmed by
the replica, and after the master is SIGKILLed the same client writes to the promoted replica."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from dsa110d.config import Config
from dsa110d.errors import ServerUnavailableError
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.state.connection import connected
from dsa110d.state.keys import Keys
from dsa110d.state.streams import ReliableStream
from tests.conftest import make_config
from tests.integration.state.sentinelkit import MASTER_NAME, PASSWORD, SENTINEL_PASSWORD, Cluster
from tests.integration.state.test_secured import make_certificates

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]
FAILOVER_TIMEOUT_SEC = 30.0


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[Cluster]:
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    made = Cluster(tmp_path / "cluster", certs=certs)
    try:
        made.start()
        yield made
    finally:
        made.close()


def _config(tmp_path: Path, cluster: Cluster) -> Config:
    assert cluster.certs is not None
    (tmp_path / "sentinel.pw").write_text(SENTINEL_PASSWORD + "\n")
    return make_config(
        tmp_path,
        redis__embedded="false",
        redis__password=PASSWORD,
        redis__sentinel__master_name=MASTER_NAME,
        redis__sentinel__addresses=json.dumps(cluster.sentinel_addresses),
        redis__sentinel__password_file=tmp_path / "sentinel.pw",
        redis__tls__enabled="true",
        redis__tls__ca_file=cluster.certs / "ca.crt",
        redis__socket_timeout=2,
        redis__socket_connect_timeout=1,
    )


async def test_tls_sentinels_lead_to_the_master_and_then_to_the_promoted_replica(
    tmp_path: Path, tls_cluster: Cluster
) -> None:
    config = _config(tmp_path, tls_cluster)
    assert config.redis.acked_replicas() == 1
    keys = Keys(config.redis.namespace)
    producer = Producer.here("test")
    async with connected(config) as client:
        stream = ReliableStream(
            client, keys, MessageType.HDF5_PROCESSING, "g", config.streams, config.retry
        )
        first = new_message(MessageType.HDF5_PROCESSING, {"n": 1}, producer)
        assert await stream.publish(first, dedup_key="first") is not None
        replica = tls_cluster.data_client(tls_cluster.replica_port)
        assert replica.xlen(stream.name) == 1  # WAIT: the replica had it before publish returned

        tls_cluster.kill_master()
        second = new_message(MessageType.HDF5_PROCESSING, {"n": 2}, producer)
        with anyio.fail_after(FAILOVER_TIMEOUT_SEC):
            while True:
                try:
                    assert await stream.publish(second, dedup_key="second") is not None
                    break
                except ServerUnavailableError:
                    await anyio.sleep(0.2)  # until the sentinels promote the replica
    assert tls_cluster.master_port_now() == tls_cluster.replica_port
    assert replica.xlen(stream.name) == 2
