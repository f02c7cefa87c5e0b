"""A real Redis master, a replica and three sentinels on loopback ports, for the HA tests.

Debian's ``redis-server`` and ``redis-sentinel`` run as subprocesses in a temporary
directory, with passwords on both the data nodes and the sentinels (so the daemon's Sentinel
connections must carry both). Every process started is stopped by :meth:`Cluster.close`,
which the fixture calls even when the test fails.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

MASTER_NAME = "dsa110-ha"
PASSWORD = "data-secret"
SENTINEL_PASSWORD = "sentinel-secret"
DOWN_AFTER_MS = 1000
"""Sentinels call the master down after this long without a reply: a quick failover."""
FAILOVER_TIMEOUT_MS = 5000
START_TIMEOUT_SEC = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ping(client: redis.Redis, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SEC
    while True:
        try:
            client.ping()
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not answer in {START_TIMEOUT_SEC} s") from None
            time.sleep(0.05)


@dataclass
class Cluster:
    root: Path
    master_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    sentinel_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    certs: Path | None = None
    """With ``ca.crt``, ``server.crt`` and ``server.key`` here, every node speaks TLS only."""

    def _tls(self, port: int) -> list[str]:
        """How a node listens: plain ``port``, or TLS only on it (the same files everywhere)."""
        if self.certs is None:
            return ["port", str(port)]
        return [
            "port", "0", "tls-port", str(port), "tls-cert-file", str(self.certs / "server.crt"),
            "tls-key-file", str(self.certs / "server.key"),
            "tls-ca-cert-file", str(self.certs / "ca.crt"), "tls-replication", "yes",
            "tls-auth-clients", "optional",
        ]  # fmt: skip

    # ------------------------------------------------------------------ processes
    def _data_node(self, name: str, port: int, *extra: str) -> None:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        pairs = self._tls(port)
        listen = [f"--{a}" if i % 2 == 0 else a for i, a in enumerate(pairs)]
        command = [
            "redis-server", *listen, "--bind", "127.0.0.1", "--dir", str(folder),
            "--save", "", "--appendonly", "no", "--requirepass", PASSWORD,
            "--masterauth", PASSWORD, "--logfile", str(folder / "redis.log"), *extra,
        ]  # fmt: skip
        self.procs[name] = subprocess.Popen(command, stdout=subprocess.DEVNULL)

    def _sentinel(self, index: int, port: int) -> None:
        folder = self.root / f"sentinel{index}"
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "sentinel.conf"
        pairs = self._tls(port)
        listen = "".join(f"{k} {v}\n" for k, v in zip(pairs[::2], pairs[1::2], strict=True))
        conf.write_text(
            f"{listen}bind 127.0.0.1\ndir {folder}\nlogfile {folder / 'sentinel.log'}\n"
            f"requirepass {SENTINEL_PASSWORD}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel auth-pass {MASTER_NAME} {PASSWORD}\n"
            f"sentinel sentinel-pass {SENTINEL_PASSWORD}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self.procs[f"sentinel{index}"] = subprocess.Popen(
            ["redis-sentinel", str(conf)], stdout=subprocess.DEVNULL
        )

    def start_data_nodes(self) -> None:
        """The master and its replica (``DEBUG SLEEP`` allowed on the replica: a lagging one)."""
        self._data_node("master", self.master_port)
        self._data_node(
            "replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port),
            "--enable-debug-command", "local",
        )  # fmt: skip
        _wait_ping(self.data_client(self.master_port), "the master")
        _wait_ping(self.data_client(self.replica_port), "the replica")
        self.wait_replica_synced()

    def start(self) -> None:
        self.start_data_nodes()
        for index, port in enumerate(self.sentinel_ports):
            self._sentinel(index, port)
        for port in self.sentinel_ports:
            _wait_ping(self.sentinel_client(port), f"sentinel on {port}")
        self.wait_sentinels_know_each_other()

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    # ------------------------------------------------------------------ clients and state
    def _client(self, port: int, password: str) -> redis.Redis:
        if self.certs is None:
            return redis.Redis(
                port=port, password=password, decode_responses=True, socket_timeout=2
            )
        return redis.Redis(
            port=port, password=password, decode_responses=True, socket_timeout=2, ssl=True,
            ssl_ca_certs=str(self.certs / "ca.crt"),
        )  # fmt: skip

    def data_client(self, port: int) -> redis.Redis:
        return self._client(port, PASSWORD)

    def sentinel_client(self, port: int) -> redis.Redis:
        return self._client(port, SENTINEL_PASSWORD)

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.sentinel_ports]

    def wait_replica_synced(self) -> None:
        replica = self.data_client(self.replica_port)
        deadline = time.monotonic() + START_TIMEOUT_SEC
        while replica.info("replication").get("master_link_status") != "up":  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise AssertionError("the replica did not sync with the master")
            time.sleep(0.05)

    def wait_sentinels_know_each_other(self) -> None:
        """Each sentinel sees the two others and the replica: a failover can be agreed."""
        deadline = time.monotonic() + START_TIMEOUT_SEC
        for port in self.sentinel_ports:
            client = self.sentinel_client(port)
            while True:
                master = client.sentinel_master(MASTER_NAME)  # type: ignore[no-untyped-call]
                if int(master["num-other-sentinels"]) >= 2 and int(master["num-slaves"]) >= 1:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"sentinel on {port} did not discover the others")
                time.sleep(0.1)

    def master_port_now(self) -> int:
        """The master's port as a sentinel reports it now."""
        sentinel = self.sentinel_client(self.sentinel_ports[0])
        _, port = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)  # type: ignore[no-untyped-call]
        return int(port)

    def kill_master(self) -> None:
        self.procs["master"].kill()
        self.procs["master"].wait(timeout=10)
