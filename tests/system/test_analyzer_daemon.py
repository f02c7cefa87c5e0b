"""``dsa110d run --env testing --services analyzer`` as a process: seeded photometry and a
burst of block messages give one analysis run, its results on disk and its candidates; an
operator's full-recompute request (``dsa110ctl recompute``) is run by the live daemon."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import redis

from dsa110d.config import load_config
from dsa110d.messages import MessageType, encode
from dsa110d.state.candidates import fetch_candidates
from tests.integration.operations.ctlkit import ctl
from tests.integration.services.analyzerkit import seeded_block_message
from tests.integration.services.seed import TRANSIENT, VARIABLES, seed_blocks
from tests.system.daemonkit import SERVICES_YAML, Daemon, payloads, wait_for


@pytest.mark.timeout(120)
def test_the_analyzer_daemon_turns_seeded_photometry_into_results_and_candidates(
    tmp_path: Path, daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon]
) -> None:
    results = tmp_path / "results"
    seed_blocks(results, range(8))
    env = daemon_env(
        DSA110__PATHS__RESULTS_DIR=results,
        DSA110__PATHS__INCOMING_DIR=tmp_path / "incoming",
        DSA110__PATHS__MS_DIR=tmp_path / "ms",
        DSA110__PATHS__PROCESSED_DIR=tmp_path / "processed",
    )
    daemons.append(daemon := Daemon(env, "analyzer"))
    daemon.wait_event("ready", timeout=60)

    client = redis.Redis.from_url(env["DSA110__REDIS__URL"], decode_responses=True)
    stream = f"{env['DSA110__REDIS__NAMESPACE']}:ms_processing"
    for b in range(8):
        client.xadd(stream, {"m": encode(seeded_block_message(results, b))})

    finished = daemon.wait_event("analysis_finished", timeout=60)
    assert finished["status"] == "ok" and finished["n_blocks_noted"] == 8
    latest = results / "variability" / "latest.parquet"
    wait_for(latest.exists, timeout=5)
    assert (results / "variability" / "candidates.json").exists()

    # what dsa110ctl candidates prints (its logic: dsa110d.state.candidates)
    config = load_config(SERVICES_YAML, "testing", env)
    report = anyio.run(fetch_candidates, config)
    assert report is not None and report.source == "redis"
    found = {c["source_id"]: c["class"] for c in report.candidates}
    assert found == {**dict.fromkeys(VARIABLES, "variable"), TRANSIENT: "transient"}
    assert report.candidates[0]["source_id"] == TRANSIENT
    assert len(payloads(client, env, MessageType.VARIABILITY_ANALYSIS)) == 1
    client.close()

    # an operator asks for a full recompute: the running daemon does it, same candidates
    asked = ctl(config, "recompute", "--json")
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["analyzers"] == 1
    wait_for(lambda: len(daemon.events("analysis_finished")) == 2, timeout=60)
    again = daemon.events("analysis_finished")[-1]
    assert again["full"] is True and str(again["state"]) == "rebuilt: requested"
    assert again["counts"] == finished["counts"]

    assert daemon.stop() == 0
    assert len(daemon.events("analysis_finished")) == 2
