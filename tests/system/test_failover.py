"""High availability for real: two daemons on a Sentinel-managed master and replica; the master
is SIGKILLed mid-stream; the daemons follow the promoted replica by themselves and every set is
announced once and converted exactly once."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from dsa110d.messages import MessageType
from dsa110d.science.simulation.simulate import SimulationResult, SimulationSpec, simulate
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import ENTRY_FIELD
from tests.integration.services.watcher.watcherkit import land_all
from tests.integration.state.sentinelkit import (
    MASTER_NAME,
    PASSWORD,
    SENTINEL_PASSWORD,
    Cluster,
)
from tests.system.daemonkit import REPO, Daemon, wait_for

pytestmark = pytest.mark.timeout(120)

SETS_BEFORE, SETS_AFTER = 2, 1
"""Sets landed before the master is killed (one converted, the next likely in hand) and after."""
N_SETS = SETS_BEFORE + SETS_AFTER
N_SUBBANDS = 4
"""The testing environment's expected_subbands."""
NAMESPACE = "ha"
CONVERT_TIMEOUT_SEC = 40.0
FAILOVER_TIMEOUT_SEC = 20.0


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    out = tmp_path_factory.mktemp("ha-sets")
    return simulate(
        SimulationSpec(
            out=out, start=datetime(2026, 3, 21, 6, 0, 0, tzinfo=UTC), sets=N_SETS, days=1,
            scale="small", n_subbands=N_SUBBANDS, seed=23,
        )
    )  # fmt: skip


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path / "cluster")
    try:
        made.start()
        yield made
    finally:
        made.close()


@pytest.fixture
def ha_daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    try:
        yield started
    finally:
        for index, daemon in enumerate(started):
            daemon.kill()
            print(f"--- daemon {index}, last lines:", *daemon.lines[-40:], sep="\n")  # on failure


def _set_files(sky: SimulationResult, index: int) -> list[Path]:
    truth = json.loads(Path(str(sky.truth_path)).read_text())
    folder = sky.files[0].parent
    return [folder / name for name in truth["sets"][index]["files"]]


def _env(cluster: Cluster, root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DSA110", "NOTIFY_"))}
    for name in ("incoming", "ms", "results", "processed", "state", "logs"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "sentinel-password").write_text(SENTINEL_PASSWORD + "\n")
    env.update(
        {
            "PYTHONPATH": str(REPO / "src"),
            "DSA110_ALLOW_ROOT": "1",
            "DSA110__REDIS__EMBEDDED": "false",
            "DSA110__REDIS__PASSWORD": PASSWORD,
            "DSA110__REDIS__SENTINEL__MASTER_NAME": MASTER_NAME,
            "DSA110__REDIS__SENTINEL__ADDRESSES": json.dumps(cluster.sentinel_addresses),
            "DSA110__REDIS__SENTINEL__PASSWORD_FILE": str(root / "sentinel-password"),
            "DSA110__REDIS__SOCKET_TIMEOUT": "2",
            "DSA110__REDIS__SOCKET_CONNECT_TIMEOUT": "1",
            "DSA110__REDIS__NAMESPACE": NAMESPACE,
            "DSA110__PATHS__INCOMING_DIR": str(root / "incoming"),
            "DSA110__PATHS__MS_DIR": str(root / "ms"),
            "DSA110__PATHS__RESULTS_DIR": str(root / "results"),
            "DSA110__PATHS__PROCESSED_DIR": str(root / "processed"),
            "DSA110__PATHS__STATE_DIR": str(root / "state"),
            "DSA110__PATHS__LOG_DIR": str(root / "logs"),
            "DSA110__SERVICES__HDF5_WATCHER__STABILITY_INTERVAL_SEC": "0.05",
            # Conversions only: the blocks are another test's business.
            "DSA110__SERVICES__MS_PROCESSOR__MOSAIC_DURATION_MIN": "60",
            "DSA110__SUPERVISOR__WORKERS": "1",
        }
    )
    return env


def _payloads(client: redis.Redis, message_type: MessageType) -> list[dict[str, object]]:
    stream = Keys(NAMESPACE).stream(message_type.value)
    return [json.loads(f[ENTRY_FIELD])["payload"] for _, f in client.xrange(stream)]  # type: ignore[union-attr]


def _chunk_sets(client: redis.Redis) -> Counter[str]:
    return Counter(
        str(p["set_id"]) for p in _payloads(client, MessageType.MS_PROCESSING)
        if p.get("kind") == "chunk"
    )  # fmt: skip


def _converted(daemons: list[Daemon], field: str) -> Counter[str]:
    """Per set, the ``set_converted`` events across the daemons whose ``field`` is true:
    ``new_chunk`` (the conversion recorded its chunk) or ``reused`` (a retry found the MS
    already made, e.g. by a conversion whose recording the failover interrupted)."""
    return Counter(str(e["set_id"]) for d in daemons for e in d.events("set_converted") if e[field])


def test_daemons_follow_the_promoted_replica_and_convert_every_set_once(
    cluster: Cluster, ha_daemons: list[Daemon], sky: SimulationResult, tmp_path: Path
) -> None:
    env = _env(cluster, tmp_path / "world")
    incoming = tmp_path / "world" / "incoming"
    ha_daemons.append(Daemon(env, "watcher,processor"))
    ha_daemons.append(Daemon(env, "processor"))
    for daemon in ha_daemons:
        daemon.wait_event("ready", timeout=60)
    set_ids = list(sky.set_ids)

    for index in range(SETS_BEFORE):
        land_all(_set_files(sky, index), incoming)
    wait_for(lambda: len(_converted(ha_daemons, "new_chunk")) >= 1, CONVERT_TIMEOUT_SEC, 0.1)

    old_master = cluster.master_port
    cluster.kill_master()  # mid-stream: the second set may be in hand
    for index in range(SETS_BEFORE, N_SETS):
        land_all(_set_files(sky, index), incoming)
    wait_for(lambda: cluster.master_port_now() != old_master, FAILOVER_TIMEOUT_SEC, 0.1)
    assert cluster.master_port_now() == cluster.replica_port

    promoted = cluster.data_client(cluster.replica_port)
    wait_for(lambda: set(_chunk_sets(promoted)) == set(set_ids), CONVERT_TIMEOUT_SEC, 0.2)
    assert _chunk_sets(promoted) == Counter({s: 1 for s in set_ids})
    announced = Counter(str(p["set_id"]) for p in _payloads(promoted, MessageType.HDF5_PROCESSING))
    assert announced == Counter({s: 1 for s in set_ids})
    once = Counter({s: 1 for s in set_ids})
    assert _converted(ha_daemons, "new_chunk") == once
    made = {s: n for s, n in _converted(ha_daemons, "reused").items()}
    from_subbands = Counter(
        str(e["set_id"]) for d in ha_daemons for e in d.events("set_converted") if not e["reused"]
    )
    # a set whose MS a retry reused was made by exactly one earlier, interrupted conversion
    assert all(from_subbands[s] + (1 if made.get(s) else 0) == 1 for s in set_ids)
    for daemon in ha_daemons:  # both kept running through the failover
        assert daemon.proc.poll() is None
        daemon.signal(signal.SIGTERM)
    for daemon in ha_daemons:
        assert daemon.wait(30) == 0
