"""The processor in the real daemon (``dsa110d run --services watcher,processor``): simulated
sets landed in incoming become Measurement Sets, chunk records, a processed block's Parquet
file and MS_PROCESSING messages; SIGTERM then stops it cleanly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from dsa110d.messages import MessageType
from dsa110d.science.atomic import is_complete_dir
from dsa110d.science.photometry.stage import SCHEMA
from tests.integration.services.processorkit import (
    BLOCK_SETTINGS,
    FIRST_BLOCK,
    set_files,
    simulate_sets,
)
from tests.integration.services.watcher.watcherkit import land_all
from tests.system.daemonkit import Daemon, NotifyListener, payloads, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return simulate_sets(tmp_path_factory.mktemp("daemon-sets"))


def _ms_messages(client: redis.Redis, env: dict[str, str]) -> list[dict[str, Any]]:
    return payloads(client, env, MessageType.MS_PROCESSING)


def _processor_env(
    daemon_env: Callable[..., dict[str, str]], tmp_path: Path, catalog: Path, **extra: str
) -> dict[str, str]:
    """A watcher+processor daemon's environment: its data directories under ``tmp_path``
    (incoming created), the catalog, and the processor tests' two-chunk blocks."""
    (tmp_path / "incoming").mkdir()
    return daemon_env(
        DSA110__PATHS__INCOMING_DIR=str(tmp_path / "incoming"),
        DSA110__PATHS__MS_DIR=str(tmp_path / "ms"),
        DSA110__PATHS__RESULTS_DIR=str(tmp_path / "results"),
        DSA110__PATHS__PROCESSED_DIR=str(tmp_path / "processed"),
        DSA110__PATHS__CATALOG=str(catalog),
        **{f"DSA110__{k.upper()}": str(v) for k, v in BLOCK_SETTINGS.items()},
        **extra,
    )


def _land_first_block(result: Any, incoming: Path) -> None:
    """Sets 0 and 1: the two chunks of FIRST_BLOCK."""
    for index in (0, 1):
        land_all(set_files(result, index), incoming)


def test_the_daemon_converts_landed_sets_and_processes_their_block(
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    notify: NotifyListener,
    sim: Any,
    tmp_path: Path,
) -> None:
    result, catalog = sim
    ms_dir, results = tmp_path / "ms", tmp_path / "results"
    env = _processor_env(
        daemon_env, tmp_path, catalog, NOTIFY_SOCKET=notify.name, DSA110__SUPERVISOR__WORKERS="2"
    )
    client = redis.Redis.from_url(env["DSA110__REDIS__URL"], decode_responses=True)
    daemons.append(daemon := Daemon(env, "watcher,processor"))
    wait_for(lambda: bool(notify.times_of("READY=1")), timeout=60)
    _land_first_block(result, tmp_path / "incoming")
    photometry = results / "photometry"
    wait_for(lambda: any(photometry.glob(f"{FIRST_BLOCK}.v1.t*.parquet")), timeout=120, step=0.2)
    (parquet,) = photometry.glob(f"{FIRST_BLOCK}.v1.t*.parquet")
    for set_id in result.set_ids[:2]:
        assert is_complete_dir(ms_dir / f"{set_id}.ms")
    frame = pd.read_parquet(parquet)
    assert list(frame.columns) == list(SCHEMA) and len(frame) > 0
    wait_for(lambda: any(p["kind"] == "block" for p in _ms_messages(client, env)), timeout=10)
    payloads = _ms_messages(client, env)
    assert sorted(p["set_id"] for p in payloads if p["kind"] == "chunk") == result.set_ids[:2]
    (block,) = [p for p in payloads if p["kind"] == "block"]
    assert block["block_id"] == FIRST_BLOCK and block["version"] == 1
    assert block["results"]["photometry"] == str(parquet.resolve())
    assert Path(block["results"]["flag.flag_qa"]).is_file()  # the flag stage's QA
    assert len(daemon.events("set_converted")) == 2
    assert len(daemon.events("block_processed")) == 1
    assert daemon.stop() == 0


def test_a_processor_killed_mid_work_finishes_after_a_restart_with_everything_done_once(
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    notify: NotifyListener,
    sim: Any,
    tmp_path: Path,
) -> None:
    result, catalog = sim
    ms_dir, results = tmp_path / "ms", tmp_path / "results"
    env = _processor_env(daemon_env, tmp_path, catalog, NOTIFY_SOCKET=notify.name)
    _land_first_block(result, tmp_path / "incoming")
    client = redis.Redis.from_url(env["DSA110__REDIS__URL"], decode_responses=True)
    daemons.append(first := Daemon(env, "watcher,processor"))
    wait_for(lambda: bool(first.events("set_converted")), timeout=120, step=0.05)
    first.kill()  # SIGKILL with the second set (or the block) in hand
    daemons.append(second := Daemon(env, "watcher,processor"))
    wait_for(lambda: any(p["kind"] == "block" for p in _ms_messages(client, env)), timeout=120)
    payloads = _ms_messages(client, env)
    assert sorted(p["set_id"] for p in payloads if p["kind"] == "chunk") == result.set_ids[:2]
    assert [p["version"] for p in payloads if p["kind"] == "block"] == [1]
    (block,) = [p for p in payloads if p["kind"] == "block"]
    (parquet,) = (results / "photometry").glob(f"{FIRST_BLOCK}*.parquet")  # the killed run's went
    assert block["results"]["photometry"] == str(parquet.resolve())
    assert Path(block["results"]["flag.flag_qa"]).is_file()  # the flag stage's QA
    assert len(pd.read_parquet(parquet)) > 0
    assert sorted(p.name for p in ms_dir.iterdir()) == [f"{s}.ms" for s in result.set_ids[:2]]
    assert all(is_complete_dir(ms_dir / f"{s}.ms") for s in result.set_ids[:2])
    assert second.stop() == 0
