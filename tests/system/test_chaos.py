"""The chaos suite: simulated sets through the whole pipeline (``dsa110d run --services all`` as
subprocesses on an embedded Valkey with AOF) while the daemon is killed, the server restarted
or stopped, two daemons race, the output filesystem fills, and bad inputs arrive. After each
scenario :func:`~tests.system.chaoskit.check_world` checks: one complete MS per set and no
temporaries, each block's photometry once at its latest version, photometry and variability
metrics equal to a clean run's, inputs untouched, dead letters exactly the poisoned inputs
with reasons, and the daemon healthy again without help. The table of outcomes is printed at
the end of the session."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from dsa110d.config import Config
from dsa110d.contracts import SetAnnounced
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.state import embedded
from dsa110d.state.connection import connected
from dsa110d.state.keys import Keys
from dsa110d.state.sets import SetState
from dsa110d.state.streams import ReliableStream
from tests.system.chaoskit import (
    OUTCOMES,
    Outcome,
    Reference,
    Sky,
    World,
    check_world,
    make_sky,
    reference_of,
    run_async,
    summary,
)
from tests.system.daemonkit import Daemon, wait_for

pytestmark = pytest.mark.timeout(1800)

KILL_SEED = 20261126
KILL_MOMENTS = ("detection", "conversion", "block", "analysis", "detection",
                "conversion", "detection", "conversion", "block", "analysis")  # fmt: skip
"""The phases of the ten kill -9 moments (the delay within each phase is drawn, seeded)."""
OUTAGE_SEC = 30.0


@pytest.fixture(scope="session")
def sky(tmp_path_factory: pytest.TempPathFactory) -> Sky:
    return make_sky(tmp_path_factory.mktemp("chaos-sky"))


@pytest.fixture
def world(tmp_path: Path, sky: Sky) -> Iterator[World]:
    made = World(tmp_path / "world", sky)
    yield made
    made.close()


@pytest.fixture(scope="session")
def clean(sky: Sky, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One undisturbed run of the whole pipeline: the reference every scenario must equal."""
    world = World(tmp_path_factory.mktemp("chaos-clean") / "world", sky)
    began = time.monotonic()
    try:
        daemon = world.start_daemon()
        world.wait_ready(daemon)
        world.land_all()
        world.wait_done()
        failures = check_world(world, daemon, None)
        _record("clean run (reference)", began, failures, f"{len(world.inputs)} files")
        assert not failures, failures
        return reference_of(world)
    finally:
        world.close()


@pytest.fixture(autouse=True)
def _outcome_on_error(request: pytest.FixtureRequest) -> Iterator[None]:
    """A scenario that failed before recording its outcome still gets a row in the table."""
    count, began = len(OUTCOMES), time.monotonic()
    yield
    report = getattr(request.node, "rep_call", None) or getattr(request.node, "rep_setup", None)
    if len(OUTCOMES) == count and report is not None and report.failed:
        reason = str(report.longrepr).strip().splitlines()[-1][:200]
        OUTCOMES.append(Outcome(request.node.name, False, time.monotonic() - began, reason))


def _record(scenario: str, began: float, failures: list[str], detail: str = "") -> None:
    text = "; ".join(failures) if failures else detail
    OUTCOMES.append(Outcome(scenario, not failures, time.monotonic() - began, text))


def _finish(
    name: str,
    world: World,
    daemon: Daemon,
    clean: Reference,
    began: float,
    detail: str,
    dead: dict[str, list[str]] | None = None,
) -> None:
    """Wait for the pipeline to finish, run every check, record the outcome, assert."""
    try:
        world.wait_done()
    except AssertionError as exc:
        _record(name, began, [str(exc)])
        raise
    failures = check_world(world, daemon, clean, dead)
    _record(name, began, failures, detail)
    assert not failures, failures


def _kill_at(world: World, daemon: Daemon, phase: str, rng: random.Random) -> str:
    """Wait for ``phase`` to be under way, then kill -9 after a drawn delay; what happened."""
    staging = world.results / ".staging"
    checks: dict[str, Callable[[], bool]] = {
        "detection": lambda: True,
        "conversion": lambda: any(s.state is SetState.CONVERTING for s in world.snapshot().sets),
        "block": lambda: staging.exists() and any(staging.iterdir()),
        "analysis": lambda: world.snapshot().analyzer_lease is not None,
    }
    hit = "hit"
    try:
        wait_for(checks[phase], timeout=30.0, step=0.02)
    except AssertionError:
        hit = "missed"
    time.sleep(rng.uniform(0.0, 0.4))
    daemon.kill()
    return hit


def test_kill_9_at_ten_moments(world: World, clean: Reference) -> None:
    began, rng = time.monotonic(), random.Random(KILL_SEED)
    n_sets = len(world.sky.set_ids)
    outcomes = []
    for moment, phase in enumerate(KILL_MOMENTS):
        daemon = world.start_daemon()
        world.wait_ready(daemon)
        if moment < n_sets:
            world.land_set(moment)
        outcomes.append(f"{phase}:{_kill_at(world, daemon, phase, rng)}")
    world.land_all()
    daemon = world.start_daemon()
    detail = f"{len(KILL_MOMENTS)} kills ({', '.join(outcomes)})"
    _finish("kill -9 x10", world, daemon, clean, began, detail)


def test_redis_restarted_mid_run(world: World, clean: Reference) -> None:
    began = time.monotonic()
    daemon = world.start_daemon()
    world.wait_ready(daemon)
    world.land_all()
    wait_for(lambda: any(s.state is SetState.CONVERTED for s in world.snapshot().sets), 120, 0.1)
    embedded.stop_server(world.state_dir)
    embedded.ensure_server(world.state_dir)
    _finish("redis restart (AOF)", world, daemon, clean, began, "restarted after 1st conversion")


def test_redis_down_30_s(world: World, clean: Reference) -> None:
    began = time.monotonic()
    daemon = world.start_daemon()
    world.wait_ready(daemon)
    world.land_set(0)
    world.land_set(1)
    wait_for(lambda: any(s.state is SetState.CONVERTED for s in world.snapshot().sets), 120, 0.1)
    embedded.stop_server(world.state_dir)
    world.land_all()  # sets keep landing while the server is away
    time.sleep(OUTAGE_SEC)
    alive = daemon.proc.poll() is None
    embedded.ensure_server(world.state_dir)
    detail = f"down {OUTAGE_SEC:g} s; daemon {'kept running' if alive else 'exited'}"
    _finish("redis down 30 s", world, daemon, clean, began, detail)


def test_two_daemons_same_directory_and_server(world: World, clean: Reference) -> None:
    began = time.monotonic()
    first, second = world.start_daemon(), world.start_daemon()
    world.wait_ready(first)
    world.wait_ready(second)
    world.land_all()
    _finish("two daemons", world, second, clean, began, "both ran all services")
    assert first.proc.poll() is None, "the first daemon died"


def _mount_tmpfs(where: Path, size_mb: int) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
        capture_output=True,
    )
    return done.returncode == 0


def test_output_filesystem_full_then_freed(world: World, clean: Reference) -> None:
    began = time.monotonic()
    if os.geteuid() != 0 or not _mount_tmpfs(world.ms_dir, 64):
        pytest.skip("needs root to mount a tmpfs")
    try:
        filler = world.ms_dir / "filler"
        free = shutil.disk_usage(world.ms_dir).free
        with filler.open("wb") as out:
            out.write(b"\0" * (free - 64 * 1024))
        daemon = world.start_daemon()
        world.wait_ready(daemon)
        world.land_all()
        try:  # a conversion has met the full disk (its set failed once, or is retried)
            wait_for(lambda: any(s.attempts > 0 or s.state is SetState.FAILED
                                 for s in world.snapshot().sets), 90, 0.2)  # fmt: skip
            seen = "a conversion failed on the full disk"
        except AssertionError:
            seen = "no failed conversion seen within 90 s"
        time.sleep(2.0)
        snap = world.snapshot()
        filler.unlink()
        detail = f"{seen} ({summary(snap)}), then freed"
        _finish("output filesystem full", world, daemon, clean, began, detail)
    finally:
        for d in world.daemons:
            d.kill()
        subprocess.run(["umount", "-l", str(world.ms_dir)], capture_output=True)


BAD_TIME = "2026-03-20T09:00:00"
FOREIGN_TIME = "2026-03-20T09:30:00"


def _bad_files(world: World, scratch: Path) -> dict[str, Path]:
    """The poisoned inputs, written outside incoming, by kind."""
    scratch.mkdir()
    good = world.sky.set_files(0)[0]
    data = good.read_bytes()
    made = {
        "truncated": (f"{BAD_TIME}_sb00.hdf5", data[: len(data) // 2]),
        "corrupt": (f"{BAD_TIME}_sb01.hdf5", np.random.default_rng(1).bytes(len(data))),
        "zero-byte": (f"{BAD_TIME}_sb02.hdf5", b""),
        "unreadable": (f"{FOREIGN_TIME}_sb01.hdf5", np.random.default_rng(2).bytes(4096)),
    }
    files = {}
    for kind, (name, content) in made.items():
        (scratch / name).write_bytes(content)
        files[kind] = scratch / name
    wrong = scratch / f"{BAD_TIME}_sb03.hdf5"
    shutil.copyfile(good, wrong)
    with h5py.File(wrong, "r+") as h5:
        shape = h5["Data/visdata"].shape
        del h5["Data/visdata"]
        h5.create_dataset("Data/visdata", data=np.zeros((shape[0] // 2, *shape[1:]), "c8"))
    files["wrong-shape"] = wrong
    foreign = scratch / f"{FOREIGN_TIME}_sb00.hdf5"
    with h5py.File(foreign, "w") as h5:
        h5["something"] = np.arange(10)
    files["foreign"] = foreign
    # A second copy of set 0's subband 0 under a name a few seconds off: same time_array[0].
    seconds = (int(good.name[17:19]) + 2) % 60
    name = f"{good.name[:17]}{seconds:02d}{good.name[19:]}"
    files["duplicate"] = scratch / name
    shutil.copyfile(good, files["duplicate"])
    return files


async def _publish_outside(config: Config) -> str:
    keys = Keys(config.redis.namespace)
    payload = SetAnnounced.of(
        "2026-03-20T10:00:00", {0: "/etc/passwd", 1: "/etc/hostname"}, 2461119.9, 0.65, 2, True
    ).to_payload()
    message = new_message(MessageType.HDF5_PROCESSING, payload, Producer.here("chaos"))
    async with connected(config) as redis:
        stream = ReliableStream(
            redis, keys, MessageType.HDF5_PROCESSING, "processor", config.streams, config.retry
        )
        await stream.publish(message)
    return message.id


def test_bad_inputs(world: World, clean: Reference, tmp_path: Path) -> None:
    began = time.monotonic()
    bad = _bad_files(world, tmp_path / "bad")
    daemon = world.start_daemon()
    world.wait_ready(daemon)
    world.land_all()
    landed = {kind: shutil.copy2(path, world.incoming / path.name) for kind, path in bad.items()}
    os.chmod(landed["unreadable"], 0)
    world.add_inputs([Path(p) for p in landed.values()])
    poisoned = run_async(_publish_outside, world.config())
    dead = {MessageType.HDF5_PROCESSING.value: [poisoned]}
    try:
        world.wait_done()
        snap = world.snapshot()
        recorded = {e.path: e for s in snap.sets for e in s.errors}
        missing = [f"{kind} ({Path(p).name}) has no recorded fault"
                   for kind, p in landed.items() if str(p) not in recorded]  # fmt: skip
        faults = ", ".join(f"{k}: {recorded[str(p)].kind}" for k, p in landed.items()
                           if str(p) in recorded)  # fmt: skip
    except AssertionError as exc:
        _record("bad inputs", began, [str(exc)])
        raise
    if os.geteuid() == 0:
        faults += " (root reads a mode-000 file: 'unreadable' is judged on its content)"
    failures = missing + check_world(world, daemon, clean, dead)
    _record("bad inputs", began, failures, f"faults recorded: {faults}; outside-roots message "
            "dead-lettered")  # fmt: skip
    assert not failures, failures
