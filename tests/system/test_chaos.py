"""The chaos suite: simulated sets through the whole pipeline (``dsa110d run --services all`` as
subprocesses on an embedded Valkey with AOF) while the daemon is killed, the server restarted
or stopped, two daemons race, the output filesystem fills, and bad inputs arrive. Each
scenario proves its fault happened: every kill is checked, with the daemon's processes
stopped, to have hit its phase; a conversion's write met ENOSPC before the disk was freed;
the daemon that meets the unreadable input cannot bypass file modes. After each scenario
:func:`~tests.system.chaoskit.check_world` checks: one complete MS per set, published once
(counted by inotify) and announced once, and no temporaries, each block's photometry once at
its latest version, photometry and variability metrics equal to a clean run's, inputs
untouched, dead letters exactly the poisoned inputs with reasons, and the daemon healthy again
without help. The table of outcomes is printed at the end of the session."""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
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
    ANALYZER_LEASE,
    CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH,
    N_SUBBANDS,
    OUTCOMES,
    WITHOUT_DAC,
    Outcome,
    Reference,
    Sky,
    World,
    check_world,
    effective_caps,
    frozen,
    holder_pid,
    kill_tree,
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
"""The phases of the ten kill -9 moments (the delay within each phase is drawn, seeded). With
four sets: each detection half-lands the next set, each conversion lands the rest; a block or
an analysis kill catches the run that redoes what the previous kill interrupted."""
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


PHASE_TIMEOUT_SEC = 120.0
"""How long a kill waits for its phase to begin (a restarted daemon first waits out the dead
one's leases and heartbeats)."""
KILL_DELAY_MAX_SEC = {"detection": 0.4, "conversion": 0.4, "block": 0.1, "analysis": 0.4}
"""The kill comes a drawn delay (seeded, up to this) after the phase is seen under way: within
what the phase lasts at this scale. A block runs once (nothing re-runs it) and holds its lease
~0.3 s here: a longer delay outlasted it and left the kill nothing to hit (the third draw of
the seed is 0.27 s of 0.4)."""


def _under_way(world: World, daemon: Daemon, phase: str, collecting: str | None) -> str:
    """What of ``phase`` this daemon is doing now, from Redis and the disk ('' if nothing).

    detection: the partly landed set is being collected; conversion: the daemon holds a set's
    lease and its MS is not yet published; block: it holds a block's lease; analysis: it holds
    the analyzer's lease."""
    snap = world.snapshot()
    mine = [name for name, holder in snap.leases.items() if holder_pid(holder) == daemon.proc.pid]
    if phase == "detection":
        found = [s for s in snap.sets if s.set_id == collecting and s.files]
        return (f"set {collecting} collecting {len(found[0].files)} subbands"
                if found and found[0].state is SetState.COLLECTING else "")  # fmt: skip
    if phase == "conversion":
        converting = {s.set_id for s in snap.sets if s.state is SetState.CONVERTING}
        for name in mine:
            sid = name.removeprefix("set:")
            if sid in converting and not (world.ms_dir / f"{sid}.ms").exists():
                return f"set {sid} converting"
        return ""
    prefix = {"block": "block:", "analysis": ANALYZER_LEASE}[phase]
    held = [name for name in mine if name.startswith(prefix)]
    return f"{held[0]} held" if held else ""


def _kill_at(world: World, daemon: Daemon, phase: str, rng: random.Random) -> str:
    """Land what ``phase`` needs, wait until this daemon is in it, and kill -9 it there after a
    drawn delay; what it was doing when killed. The check and the kill are made with the
    daemon's processes stopped, so that a kill counted as hitting its phase did hit it; the
    kill takes the daemon's workers too (:func:`kill_tree`)."""
    collecting = None
    unlanded = [i for i in range(len(world.sky.set_ids)) if i not in world.landed_sets]
    if phase == "detection":  # half a set: it cannot complete, so it is collected when killed
        collecting = world.sky.set_ids[unlanded[0]]
        world.land_set(unlanded[0], slice(0, N_SUBBANDS // 2))
    elif phase == "conversion":  # the rest of a half-landed set, or a new one
        partly = world.partly_landed
        if partly is not None:
            world.land_set(partly, slice(N_SUBBANDS // 2, None))
        else:
            world.land_set(unlanded[0])
    # block and analysis: the work the previous kill interrupted is redone first
    deadline = time.monotonic() + PHASE_TIMEOUT_SEC
    while time.monotonic() < deadline:
        try:
            wait_for(lambda: bool(_under_way(world, daemon, phase, collecting)),
                     timeout=max(deadline - time.monotonic(), 0.1), step=0.02)  # fmt: skip
        except AssertionError:
            break
        time.sleep(rng.uniform(0.0, KILL_DELAY_MAX_SEC[phase]))
        with frozen(daemon) as processes:
            doing = _under_way(world, daemon, phase, collecting)
            if doing:
                kill_tree(daemon, processes)
                return doing
        # the phase ended within the delay: wait for this daemon's next run of it
    raise AssertionError(
        f"kill in phase {phase}: this daemon was not seen in it within {PHASE_TIMEOUT_SEC:g} s "
        f"({summary(world.snapshot())})"
    )


def test_kill_9_at_ten_moments(world: World, clean: Reference) -> None:
    began, rng = time.monotonic(), random.Random(KILL_SEED)
    hits = []
    try:
        for phase in KILL_MOMENTS:
            daemon = world.start_daemon()
            world.wait_ready(daemon)
            hits.append(f"{phase}: {_kill_at(world, daemon, phase, rng)}")
    except AssertionError as exc:
        _record("kill -9 x10", began, [str(exc)], "; ".join(hits))
        raise
    world.land_all()
    daemon = world.start_daemon()
    detail = f"{len(KILL_MOMENTS)} kills, each in its phase ({'; '.join(hits)})"
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


FULL_INODES = 512
"""The output tmpfs's inodes (files and directories): the filler takes all but a few."""
FULL_INODES_LEFT = 30
"""Inodes left to the converter: an MS has ~90 files and directories, so its writing starts
and meets ENOSPC part-way. (A disk out of bytes instead is refused before the first write by
the converter's space check, and no write would meet ENOSPC.)"""
ENOSPC_TEXT = ("no space left on device", "no space left on the device")
"""How a conversion's ENOSPC reads in its failure (casacore's message, or the converter's)."""


def _mount_tmpfs(where: Path, size_mb: int, inodes: int) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,nr_inodes={inodes}", "tmpfs", str(where)],
        capture_output=True,
    )
    return done.returncode == 0


def _fill_inodes(directory: Path, leave: int) -> None:
    """Create empty files until the filesystem has no inode left, then free ``leave``."""
    directory.mkdir()
    made = 0
    try:
        while True:
            (directory / str(made)).touch()
            made += 1
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    for name in range(made - leave, made):
        (directory / str(name)).unlink()


def _enospc_failures(daemon: Daemon) -> list[str]:
    """The set failures this daemon logged whose reason is ENOSPC."""
    reasons = [str(e.get("reason", "")) for e in daemon.events("set_failed")]
    return [r for r in reasons if any(t in r.lower() for t in ENOSPC_TEXT)]


def test_output_filesystem_full_then_freed(world: World, clean: Reference) -> None:
    began = time.monotonic()
    if os.geteuid() != 0 or not _mount_tmpfs(world.ms_dir, 64, FULL_INODES):
        pytest.skip("needs root to mount a tmpfs")
    try:
        filler = world.ms_dir / "filler"
        _fill_inodes(filler, FULL_INODES_LEFT)
        daemon = world.start_daemon()
        world.wait_ready(daemon)
        world.land_all()
        try:  # a conversion's write has met ENOSPC, while the filesystem is still full
            wait_for(lambda: bool(_enospc_failures(daemon)), 90, 0.1)
        except AssertionError:
            failures = [f"no conversion met ENOSPC within 90 s ({summary(world.snapshot())})"]
            _record("output filesystem full", began, failures)
            raise AssertionError(failures[0]) from None
        met = _enospc_failures(daemon)
        shutil.rmtree(filler)
        detail = f"{len(met)} conversion(s) met ENOSPC (…{met[0][-90:]}), then freed"
        _finish("output filesystem full", world, daemon, clean, began, detail)
    finally:
        for d in world.daemons:
            d.kill()
        subprocess.run(["umount", "-l", str(world.ms_dir)], capture_output=True)


BAD_TIME = "2026-03-20T09:00:00"
PERMISSION_TEXT = "no read permission"
"""How the watcher's fault for a file it may not read begins (science.subbands)."""
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
    if os.geteuid() == 0:  # root reads a mode-000 file unless it drops its DAC capabilities
        if shutil.which("setpriv") is None:
            pytest.fail("the bad-inputs scenario needs setpriv (util-linux) to drop privileges")
        world.run_as = WITHOUT_DAC
    daemon = world.start_daemon()
    world.wait_ready(daemon)
    dac = (1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH)
    assert not effective_caps(daemon.proc.pid) & dac, "the daemon may still read any file"
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
    unreadable = recorded.get(str(landed["unreadable"]))
    if unreadable is not None and PERMISSION_TEXT not in unreadable.reason:
        missing.append(f"unreadable: refused for {unreadable.reason!r}, not its permission")
    failures = missing + check_world(world, daemon, clean, dead)
    _record("bad inputs", began, failures, f"faults recorded: {faults}; outside-roots message "
            "dead-lettered; the daemon could not bypass file modes")  # fmt: skip
    assert not failures, failures
