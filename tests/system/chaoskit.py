"""The chaos suite's harness: a pipeline world (directories, embedded server, daemons), its
state read from Redis through the state API, and the checks every scenario must pass.

It needs only the daemon CLI (``dsa110d run`` as subprocesses), the simulator and Redis reads.
A :class:`World` is one scenario's pipeline: its own directories under ``tmp_path`` and its
own embedded Valkey server (AOF, under ``state/``), which the harness may stop and restart.
:func:`check_world` compares what the world produced with the clean run's
:class:`Reference` and returns the failed checks, one line each; :data:`OUTCOMES` collects
one row per scenario for the table printed at the end of the session.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import select
import signal
import struct
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import numpy as np
import pandas as pd

from dsa110d.config import Config, load_config
from dsa110d.messages import MessageType
from dsa110d.science.atomic import is_complete_dir
from dsa110d.science.simulation.simulate import SimulationResult, SimulationSpec, simulate
from dsa110d.science.variability.results import LATEST_TABLE, RESULTS_SUBDIR
from dsa110d.services.analyzer import LEASE_NAME as ANALYZER_LEASE_NAME
from dsa110d.state import embedded
from dsa110d.state.analysis import AnalysisQueue, Outlook
from dsa110d.state.blocks import BlockRecord, Blocks, BlockState
from dsa110d.state.connection import connected
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases
from dsa110d.state.registry import Registry, RegistryEntry
from dsa110d.state.sets import SetRecord, Sets, SetState
from dsa110d.state.stream_entries import ENTRY_FIELD, DeadLetter
from dsa110d.state.streams import ReliableStream
from tests.integration.services.processorkit import truth_catalog
from tests.integration.services.watcher.watcherkit import land_all
from tests.system.daemonkit import REPO, SERVICES_YAML, Daemon, wait_for

T = TypeVar("T")

START = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
SETS_PER_DAY = 2
DAYS = 2
N_SUBBANDS = 4
"""The testing environment's expected_subbands."""
SEED = 17
SETTINGS = {
    "DSA110__SERVICES__HDF5_WATCHER__STABILITY_INTERVAL_SEC": "0.05",
    # One chunk per block: no block waits for chunks the short simulated days never make.
    "DSA110__SERVICES__MS_PROCESSOR__MOSAIC_DURATION_MIN": "5",
    "DSA110__SERVICES__MS_PROCESSOR__MOSAIC_OVERLAP_MIN": "0",
    # Bounds a conversion or block run: generous, the machine running CI may be busy.
    "DSA110__SERVICES__MS_PROCESSOR__PROCESSING_TIMEOUT_SEC": "180",
    "DSA110__SERVICES__VARIABILITY_ANALYZER__MIN_DATA_POINTS": "2",
    "DSA110__SUPERVISOR__WORKERS": "2",
}
"""The chaos runs' overrides of the testing environment (tiny, fast, short blocks)."""
DONE_TIMEOUT_SEC = 600.0
METRIC_RTOL = 1e-6
"""Relative tolerance of 'identical' metrics and fluxes (the analysis promises 1e-9 between
its incremental and full paths; photometry is deterministic)."""
STREAMS = (MessageType.HDF5_PROCESSING, MessageType.MS_PROCESSING)
ANALYZER_LEASE = ANALYZER_LEASE_NAME


@dataclass
class Outcome:
    scenario: str
    passed: bool
    seconds: float
    detail: str


OUTCOMES: list[Outcome] = []
"""One row per scenario run in this session (printed by conftest's terminal summary)."""


def outcome_table() -> list[str]:
    """The scenario table, as lines."""
    if not OUTCOMES:
        return []
    width = max(len(o.scenario) for o in OUTCOMES)
    lines = [f"{'scenario':<{width}}  outcome  seconds  detail"]
    for o in OUTCOMES:
        verdict = "PASS   " if o.passed else "FAIL   "
        lines.append(f"{o.scenario:<{width}}  {verdict}  {o.seconds:7.1f}  {o.detail}")
    return lines


# ---------------------------------------------------------------------------- simulated sky
@dataclass(frozen=True)
class Sky:
    """The session's simulated sets (built once) and their catalog."""

    result: SimulationResult
    catalog: Path

    def set_files(self, index: int) -> list[Path]:
        truth = json.loads(Path(str(self.result.truth_path)).read_text())
        names = truth["sets"][index]["files"]
        folder = self.result.files[0].parent
        return [folder / n for n in names]

    @property
    def set_ids(self) -> list[str]:
        return list(self.result.set_ids)


def make_sky(out: Path) -> Sky:
    result = simulate(
        SimulationSpec(
            out=out / "sets", start=START, sets=SETS_PER_DAY, days=DAYS, scale="small",
            n_subbands=N_SUBBANDS, seed=SEED,
        )
    )  # fmt: skip
    return Sky(result, truth_catalog(result, out / "catalog.csv"))


def fingerprint(paths: list[Path]) -> dict[str, tuple[str, int, int, int]]:
    """sha256, size, mtime and mode of each file (inputs must never change)."""
    found = {}
    for p in paths:
        info = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        found[str(p)] = (digest, info.st_size, info.st_mtime_ns, info.st_mode)
    return found


# ---------------------------------------------------------------------------- state snapshot
@dataclass
class Snapshot:
    """Everything the checks read from Redis, at one moment."""

    sets: list[SetRecord]
    blocks: list[BlockRecord]
    outlook: Outlook
    last_run: dict[str, Any]
    dead: dict[str, list[DeadLetter]]
    registry: list[RegistryEntry]
    analyzer_lease: tuple[int, str] | None
    chunk_announcements: Counter[str]
    """Chunk messages on the MS_PROCESSING stream, per set."""
    leases: dict[str, tuple[int, str]]
    """The set, block and analysis leases held at this moment: name -> (token, owner)."""


async def read_snapshot(config: Config) -> Snapshot:
    keys = Keys(config.redis.namespace)
    async with connected(config) as redis:
        queue = AnalysisQueue(redis, keys)
        dead = {}
        for kind in STREAMS:
            stream = ReliableStream(redis, keys, kind, "chaos", config.streams, config.retry)
            dead[kind.value] = await stream.dead_letters(1000)
        sets = await Sets(redis, keys).list()
        blocks = await Blocks(redis, keys).blocks()
        leases = Leases(redis, keys, config.leases)
        names = [f"set:{s.set_id}" for s in sets] + [f"block:{b.block_id}" for b in blocks]
        held = {n: await leases.holder(n) for n in [*names, ANALYZER_LEASE]}
        announced: Counter[str] = Counter()
        entries = await redis.xrange(keys.stream(MessageType.MS_PROCESSING.value))
        for _, fields in entries:
            payload = json.loads(fields[ENTRY_FIELD])["payload"]
            if payload.get("kind") == "chunk":
                announced[str(payload.get("set_id"))] += 1
        return Snapshot(
            sets=sets,
            blocks=blocks,
            outlook=await queue.outlook(),
            last_run=await queue.last_run() or {},
            dead=dead,
            registry=await Registry(redis, keys).entries(),
            analyzer_lease=held[ANALYZER_LEASE],
            chunk_announcements=announced,
            leases={n: h for n, h in held.items() if h is not None},
        )


def run_async(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    return anyio.run(func, *args)


# ---------------------------------------------------------------------------- publications
IN_MOVED_TO = 0x00000080  # <sys/inotify.h>
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


class Publications:
    """Counts the renames onto each name in one directory (inotify IN_MOVED_TO), from a
    thread: every MS the converter publishes is one rename of its temporary onto
    ``<set>.ms``, so a conversion repeated in place counts twice even though the directory
    looks the same at the end."""

    def __init__(self, directory: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0 or self._libc.inotify_add_watch(
            self._fd, os.fsencode(directory), IN_MOVED_TO
        ) < 0:  # fmt: skip
            raise OSError(ctypes.get_errno(), f"inotify on {directory}")
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size : offset + _EVENT.size + size]
                offset += _EVENT.size + size
                if mask & IN_MOVED_TO:
                    self.counts[os.fsdecode(raw.rstrip(b"\0"))] += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self._fd)


# ---------------------------------------------------------------------------- freezing a daemon
def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (workers, the converter's forked writers), parents first.

    Every thread's ``children`` file is read, not only the main thread's: the daemon starts
    the workers' forkserver from a worker thread (``anyio.to_thread``), and a child is listed
    under the thread that forked it."""
    found, todo = [], [pid]
    while todo:
        here = todo.pop(0)
        found.append(here)
        try:
            threads = os.listdir(f"/proc/{here}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                children = Path(f"/proc/{here}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            todo += [int(c) for c in children if int(c) not in found and int(c) not in todo]
    return found


@contextlib.contextmanager
def frozen(daemon: Daemon) -> Iterator[list[int]]:
    """The daemon and every process under it stopped (SIGSTOP) for the duration, so that what
    it is doing can be read from Redis and the disk without it moving on; yields their PIDs;
    continued after (unless killed meanwhile)."""
    stopped: list[int] = []
    try:
        while new := [p for p in process_tree(daemon.proc.pid) if p not in stopped]:
            for pid in new:  # until no process forked between the scan and the signal
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield stopped
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def kill_tree(daemon: Daemon, pids: list[int]) -> None:
    """kill -9 the daemon and its workers at once, as systemd does to the unit's processes
    (KillMode=control-group): a worker left running would finish the interrupted work after
    the "crash" and race the restarted daemon's redo of it."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    daemon.kill()


def holder_pid(holder: tuple[int, str]) -> int:
    """The process that holds a lease (its owner is ``host:pid:random``)."""
    return int(holder[1].rsplit(":", 2)[1])


# ---------------------------------------------------------------------------- the world
@dataclass
class World:
    """One scenario's pipeline: directories, server, daemons, what was landed."""

    root: Path
    sky: Sky
    extra_env: dict[str, str] = field(default_factory=dict)
    daemons: list[Daemon] = field(default_factory=list)
    inputs: list[Path] = field(default_factory=list)
    landed_sets: list[int] = field(default_factory=list)
    prints: dict[str, tuple[str, int, int, int]] = field(default_factory=dict)
    """Fingerprints of every input, taken when it landed."""
    run_as: tuple[str, ...] = ()
    """A command the daemons run under (:data:`WITHOUT_DAC` to drop privileges)."""
    publications: Publications | None = None
    """Renames into ms_dir, counted from the first daemon's start (after any mount on it)."""

    def __post_init__(self) -> None:
        for name in ("incoming", "ms", "results", "processed", "state", "logs"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def ms_dir(self) -> Path:
        return self.root / "ms"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DSA110", "NOTIFY_"))}
        env.update(
            {
                "PYTHONPATH": str(REPO / "src"),
                "DSA110_ALLOW_ROOT": "1",
                "DSA110__REDIS__EMBEDDED": "true",
                "DSA110__REDIS__NAMESPACE": "chaos",
                "DSA110__PATHS__INCOMING_DIR": str(self.incoming),
                "DSA110__PATHS__MS_DIR": str(self.ms_dir),
                "DSA110__PATHS__RESULTS_DIR": str(self.results),
                "DSA110__PATHS__PROCESSED_DIR": str(self.root / "processed"),
                "DSA110__PATHS__STATE_DIR": str(self.state_dir),
                "DSA110__PATHS__LOG_DIR": str(self.root / "logs"),
                "DSA110__PATHS__CATALOG": str(self.sky.catalog),
                **SETTINGS,
                **self.extra_env,
            }
        )
        return env

    def config(self) -> Config:
        return load_config(SERVICES_YAML, "testing", self.env)

    def start_daemon(self) -> Daemon:
        if self.publications is None:
            self.publications = Publications(self.ms_dir)
        daemon = Daemon(self.env, "all", prefix=self.run_as)
        self.daemons.append(daemon)
        return daemon

    def wait_ready(self, daemon: Daemon, timeout: float = 240.0) -> None:
        daemon.wait_event("ready", timeout)

    def land_set(self, index: int, subbands: slice = slice(None)) -> None:
        """Land set ``index`` (or only its files in ``subbands``, the rest to follow)."""
        self.add_inputs(land_all(self.sky.set_files(index)[subbands], self.incoming))
        if index not in self.landed_sets:
            self.landed_sets.append(index)

    def add_inputs(self, paths: list[Path]) -> None:
        self.inputs += paths
        self.prints.update(fingerprint(paths))

    def land_all(self) -> None:
        while (index := self.partly_landed) is not None:
            landed = {Path(p).name for p in self.inputs}
            files = self.sky.set_files(index)
            self.add_inputs(land_all([f for f in files if f.name not in landed], self.incoming))
        for index in range(len(self.sky.set_ids)):
            if index not in self.landed_sets:
                self.land_set(index)

    def snapshot(self) -> Snapshot:
        return run_async(read_snapshot, self.config())

    @property
    def partly_landed(self) -> int | None:
        """A landed set some of whose files have not landed yet (the first such), or None."""
        landed = {Path(p).name for p in self.inputs}
        for index in self.landed_sets:
            if any(f.name not in landed for f in self.sky.set_files(index)):
                return index
        return None

    def expected_sets(self) -> list[str]:
        return [self.sky.set_ids[i] for i in sorted(self.landed_sets)]

    def done(self, snap: Snapshot) -> bool:
        """Every landed set converted, every block processed, the analysis caught up."""
        states = {s.set_id: s.state for s in snap.sets}
        if any(states.get(sid) is not SetState.CONVERTED for sid in self.expected_sets()):
            return False
        if not snap.blocks or any(
            b.state is not BlockState.PROCESSED or b.stale for b in snap.blocks
        ):
            return False
        last = snap.last_run
        newest_block = max(b.processed_at for b in snap.blocks)
        return (
            snap.outlook.pending == 0
            and last.get("status") == "ok"
            and float(last.get("started_at", 0)) >= newest_block
        )

    def wait_done(self, timeout: float = DONE_TIMEOUT_SEC) -> Snapshot:
        deadline = time.monotonic() + timeout
        snap = self.snapshot()
        while not self.done(snap):
            if time.monotonic() > deadline:
                raise AssertionError(f"pipeline not done within {timeout:g} s: {summary(snap)}")
            time.sleep(0.5)
            snap = self.snapshot()
        return snap

    def server_url(self) -> str:
        server = embedded.running_server(self.state_dir)
        assert server is not None, "the embedded server is not running"
        return server.url

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        embedded.stop_server(self.state_dir)
        if self.publications is not None:
            self.publications.close()


CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
"""The capabilities that let root read a file whatever its mode (capabilities(7))."""
_NO_DAC = "-dac_override,-dac_read_search"
WITHOUT_DAC = ("setpriv", f"--inh-caps={_NO_DAC}", f"--bounding-set={_NO_DAC}")
"""Run a daemon as root without the capabilities that bypass file modes, it and every process
it starts: a mode-000 file is then as unreadable to it as to the ``dsa110`` user the unit
runs as. (Running it as nobody instead needs an interpreter nobody may execute: a venv whose
Python lives under /root, as on the development hosts, is not one.)"""


def effective_caps(pid: int) -> int:
    """A running process's effective capability set, as a bit mask."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"process {pid} has no CapEff line")


def summary(snap: Snapshot) -> str:
    states: dict[str, int] = {}
    for s in snap.sets:
        states[s.state.value] = states.get(s.state.value, 0) + 1
    blocks = sum(b.state is BlockState.PROCESSED and not b.stale for b in snap.blocks)
    return (
        f"sets {states}, blocks processed {blocks}/{len(snap.blocks)}, analysis pending "
        f"{snap.outlook.pending}, last run {snap.last_run.get('status')!r}, dead letters "
        f"{ {k: len(v) for k, v in snap.dead.items()} }"
    )


# ---------------------------------------------------------------------------- the reference
@dataclass(frozen=True)
class Reference:
    """A clean run's photometry and variability metrics."""

    photometry: pd.DataFrame
    metrics: pd.DataFrame


def photometry_frame(results: Path) -> pd.DataFrame:
    files = sorted((results / "photometry").glob("*.parquet"))
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return frame.sort_values(["block_id", "source_id"]).reset_index(drop=True)


def metrics_frame(results: Path) -> pd.DataFrame:
    frame = pd.read_parquet(results / RESULTS_SUBDIR / LATEST_TABLE)
    frame["source_id"] = frame["source_id"].astype(str)
    return frame.sort_values("source_id").reset_index(drop=True)


def reference_of(world: World) -> Reference:
    return Reference(photometry_frame(world.results), metrics_frame(world.results))


# ---------------------------------------------------------------------------- the checks
def _frames_differ(ours: pd.DataFrame, theirs: pd.DataFrame, what: str) -> str:
    if list(ours.columns) != list(theirs.columns) or len(ours) != len(theirs):
        return f"{what}: {len(ours)} rows {list(ours.columns)} vs clean {len(theirs)} rows"
    for column in ours.columns:
        a, b = ours[column], theirs[column]
        if pd.api.types.is_float_dtype(a):
            same = np.allclose(a.to_numpy(float), b.to_numpy(float), rtol=METRIC_RTOL,
                               atol=0.0, equal_nan=True)  # fmt: skip
        else:
            same = bool((a.astype(str) == b.astype(str)).all())
        if not same:
            return f"{what}: column {column!r} differs from the clean run"
    return ""


def check_outputs(world: World, snap: Snapshot, clean: Reference | None) -> list[str]:
    """MS exactly once (one publication and one chunk announcement per set, so that a
    conversion repeated in place is seen), photometry once at its latest version, metrics as
    the clean run's."""
    failures = _check_ms(world, snap) + _check_photometry(world, snap)
    if clean is not None:
        ours = photometry_frame(world.results).drop(columns=["version"])
        problem = _frames_differ(ours, clean.photometry.drop(columns=["version"]), "photometry")
        failures += [problem] if problem else []
        problem = _frames_differ(metrics_frame(world.results), clean.metrics, "variability")
        failures += [problem] if problem else []
    return failures


def _check_ms(world: World, snap: Snapshot) -> list[str]:
    failures = []
    expected = {f"{sid}.ms" for sid in world.expected_sets()}
    found = {p.name for p in world.ms_dir.iterdir()}
    if found != expected:
        failures.append(
            f"ms_dir holds {sorted(found - expected)} beyond, misses {sorted(expected - found)}"
        )
    failures += [f"{n}: not a complete MS" for n in expected & found
                 if not is_complete_dir(world.ms_dir / n)]  # fmt: skip
    for sid in world.expected_sets():
        published = world.publications.counts[f"{sid}.ms"] if world.publications else 0
        announced = snap.chunk_announcements[sid]
        if (published, announced) != (1, 1):
            failures.append(f"set {sid}: MS published {published} times, chunk announced "
                            f"{announced} times (each must be exactly once)")  # fmt: skip
    return failures


def _check_photometry(world: World, snap: Snapshot) -> list[str]:
    failures = []
    photometry = world.results / "photometry"
    files = {p.name for p in photometry.iterdir()} if photometry.exists() else set()
    # each block's file is the one its record names (``<block>.v<n>.t<token>.parquet``)
    named = {
        b.block_id: Path(b.results.get("photometry", f"{b.block_id}.none")) for b in snap.blocks
    }
    wanted = {path.name for path in named.values()}
    if files != wanted:
        failures.append(
            f"photometry holds {sorted(files - wanted)} beyond the block records "
            f"{sorted(b.block_id for b in snap.blocks)}, misses {sorted(wanted - files)}"
        )
    staging = world.results / ".staging"
    if staging.exists() and any(staging.iterdir()):
        failures.append(f"staging left behind: {sorted(p.name for p in staging.iterdir())}")
    for block in snap.blocks:
        path = photometry / named[block.block_id].name
        if not path.exists():
            continue
        frame = pd.read_parquet(path)
        if set(frame["version"]) != {block.version}:
            failures.append(f"{path.name}: versions {sorted(set(frame['version']))}, record "
                            f"says {block.version}")  # fmt: skip
        if frame["source_id"].duplicated().any():
            failures.append(f"{path.name}: a source appears twice")
    return failures


def check_dead_letters(snap: Snapshot, expected: dict[str, list[str]] | None = None) -> list[str]:
    """Dead letters hold exactly the expected poisoned messages (by message id), with reasons."""
    expected = expected or {}
    failures = []
    for stream, letters in snap.dead.items():
        ids = sorted(json.loads(d.raw).get("id", "?") for d in letters)
        if ids != sorted(expected.get(stream, [])):
            reasons = "; ".join(d.reason[:120] for d in letters)
            failures.append(f"dead letters on {stream}: {ids} (expected "
                            f"{sorted(expected.get(stream, []))}): {reasons}")  # fmt: skip
        failures += [f"dead letter {d.dead_id} on {stream} has no reason"
                     for d in letters if not d.reason]  # fmt: skip
    return failures


def check_healthy(world: World, daemon: Daemon, timeout: float = 30.0) -> list[str]:
    """The running daemon reports every service HEALTHY in the registry, without help."""
    if daemon.proc.poll() is not None:
        return [f"the daemon exited with {daemon.proc.returncode}"]
    services = {"watcher", "processor", "analyzer"}
    last: list[RegistryEntry] = []

    def healthy() -> bool:
        nonlocal last
        last = [e for e in world.snapshot().registry if e.pid == daemon.proc.pid]
        return {e.service for e in last if e.health == "HEALTHY"} >= services

    try:
        wait_for(healthy, timeout, step=0.5)
    except AssertionError:
        return [f"not healthy after {timeout:g} s: "
                + ", ".join(f"{e.service}={e.health} ({e.reason})" for e in last)]  # fmt: skip
    return []


def check_inputs(world: World, before: dict[str, tuple[str, int, int, int]]) -> list[str]:
    after = fingerprint([Path(p) for p in before])
    return [f"input changed: {p}" for p in before if before[p] != after[p]]


def check_world(
    world: World, daemon: Daemon, clean: Reference | None, dead: dict[str, list[str]] | None = None
) -> list[str]:
    """Every check of the brief, after the world is done."""
    snap = world.snapshot()
    return (
        check_outputs(world, snap, clean)
        + check_dead_letters(snap, dead)
        + check_inputs(world, world.prints)
        + check_healthy(world, daemon)
    )
