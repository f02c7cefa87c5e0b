"""The daemon as a real process: one-for-one restarts, restart intensity, graceful
shutdown on SIGTERM (in-flight work finished or abandoned and redelivered), SIGHUP reload."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.system.daemonkit import SERVICES_YAML, Daemon, NotifyListener, lines_of, wait_for


def test_a_crashing_service_is_restarted_while_its_sibling_keeps_running(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], tmp_path: Path
) -> None:
    env = daemon_env(DSA110__SUPERVISOR__MAX_RESTARTS=100)
    daemons.append(daemon := Daemon(env, "steady,crashy"))
    wait_for(lambda: len(lines_of(tmp_path / "crashy.starts")) >= 4, timeout=15)
    ticks_then = len(lines_of(tmp_path / "steady.ticks"))
    wait_for(lambda: len(lines_of(tmp_path / "crashy.starts")) >= 6, timeout=15)
    assert len(lines_of(tmp_path / "steady.ticks")) > ticks_then  # the sibling kept working
    assert daemon.proc.poll() is None
    assert daemon.events("service_crashed")
    assert daemon.stop() == 0


def test_exceeding_the_restart_intensity_exits_non_zero_and_says_why(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], tmp_path: Path
) -> None:
    env = daemon_env(
        DSA110__SUPERVISOR__MAX_RESTARTS=2,
        DSA110__SUPERVISOR__WINDOW_SEC=60,
        DSA110_TEST_CRASH_AFTER=0.05,
    )
    daemons.append(daemon := Daemon(env, "steady,crashy"))
    assert daemon.wait() == 1
    assert len(lines_of(tmp_path / "crashy.starts")) == 3  # the first run and two restarts
    reason = str(daemon.events("giving_up")[-1]["reason"])
    assert "restart intensity exceeded" in reason and "crashy" in reason


def test_sigterm_lets_in_flight_work_finish_within_the_grace(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], tmp_path: Path
) -> None:
    (tmp_path / "queue").mkdir()
    (tmp_path / "queue" / "j2.json").write_text('{"block": 2}')
    env = daemon_env(DSA110__SUPERVISOR__SHUTDOWN_GRACE_SEC=10, DSA110_TEST_JOB_SEC=1.0)
    daemons.append(daemon := Daemon(env, "jobs"))
    wait_for((tmp_path / "job.j2.began").exists)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert not (tmp_path / "queue" / "j2.json").exists()
    assert (tmp_path / "out" / "j2" / "part2").read_text() == '{"block": 2}'
    assert not daemon.events("abandoning_work")


def test_sighup_reloads_a_valid_file_and_keeps_the_old_settings_for_an_invalid_one(
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    notify: NotifyListener,
    tmp_path: Path,
) -> None:
    config = tmp_path / "services.yaml"
    text = SERVICES_YAML.read_text()
    config.write_text(text)
    daemons.append(daemon := Daemon(daemon_env(NOTIFY_SOCKET=notify.name), "steady", config))
    wait_for(lambda: bool(notify.times_of("READY=1")))
    config.write_text(text.replace("backlog_degraded: 50", "backlog_degraded: 77"))
    daemon.signal(signal.SIGHUP)
    changed = daemon.wait_event("reloaded")["changed"]
    assert changed == {"supervisor.backlog_degraded": {"old": 50, "new": 77}}
    assert "RELOADING=1" in notify.fields()
    assert len(notify.times_of("READY=1")) == 2

    config.write_text(text.replace("backlog_degraded: 50", "backlog_degraded: -1"))
    daemon.signal(signal.SIGHUP)
    reason = str(daemon.wait_event("reload_rejected")["reason"])
    assert "supervisor.backlog_degraded" in reason
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0


def test_sigterm_mid_stream_job_is_redelivered_and_completed_by_the_next_daemon(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], tmp_path: Path
) -> None:
    import anyio

    from dsa110d.config import load_config
    from dsa110d.messages import MessageType, Producer, new_message
    from dsa110d.state.connection import connected
    from dsa110d.state.keys import Keys
    from dsa110d.state.streams import ReliableStream

    env = daemon_env(DSA110__SUPERVISOR__SHUTDOWN_GRACE_SEC=0.5, DSA110_TEST_JOB_SEC=30)
    config = load_config(SERVICES_YAML, "testing", env)

    def stream(redis: object) -> ReliableStream:
        return ReliableStream(
            redis,  # type: ignore[arg-type]
            Keys(config.redis.namespace),
            MessageType.MS_PROCESSING,
            "streamjobs",
            config.streams,
            config.retry,
        )

    async def publish() -> None:
        async with connected(config) as redis:
            message = new_message(MessageType.MS_PROCESSING, {"job": "b1"}, Producer.here("test"))
            await stream(redis).publish(message)

    async def pending() -> int:
        async with connected(config) as redis:
            return (await stream(redis).stats()).pending

    daemons.append(first := Daemon(env, "streamjobs"))
    first.wait_event("ready")
    anyio.run(publish)
    wait_for((tmp_path / "job.b1.began").exists)
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    assert first.events("abandoning_work")
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written left behind
    assert anyio.run(pending) == 1  # unacked: it will be redelivered

    env = daemon_env(DSA110__SUPERVISOR__SHUTDOWN_GRACE_SEC=5, DSA110_TEST_JOB_SEC=0.2)
    daemons.append(second := Daemon(env, "streamjobs"))
    wait_for((tmp_path / "out" / "b1").exists, timeout=15)
    assert json.loads((tmp_path / "out" / "b1" / "part2").read_text()) == {"job": "b1"}
    wait_for(lambda: anyio.run(pending) == 0)
    assert second.stop() == 0


def test_a_state_server_outage_degrades_the_daemon_but_never_kills_it(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], tmp_path: Path
) -> None:
    from dsa110d.state import embedded

    state_dir = tmp_path / "own-state"
    embedded.ensure_server(state_dir)
    try:
        env = daemon_env(
            DSA110__REDIS__EMBEDDED="true",
            DSA110__REDIS__URL="null",
            DSA110__PATHS__STATE_DIR=state_dir,
            DSA110__REDIS__SOCKET_TIMEOUT=0.5,
            DSA110__REDIS__SOCKET_CONNECT_TIMEOUT=0.5,
        )
        daemons.append(daemon := Daemon(env, "steady"))
        daemon.wait_event("ready")
        embedded.stop_server(state_dir)
        daemon.wait_event("heartbeat_failed")
        time.sleep(1.0)
        assert daemon.proc.poll() is None
        embedded.ensure_server(state_dir)
        daemon.wait_event("heartbeat_recovered", timeout=15)
        assert daemon.stop() == 0
    finally:
        embedded.stop_server(state_dir)
