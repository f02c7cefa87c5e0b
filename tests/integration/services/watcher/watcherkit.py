"""Helpers of the watcher tests: tiny simulated sets, landing files like the correlator, and
reading what the watcher announced."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dsa110d.config import Config
from dsa110d.contracts import SetAnnounced
from dsa110d.messages import Message, MessageType, decode
from dsa110d.science.hdf5 import ingest
from dsa110d.science.hdf5.subbands import INCOMPLETE_SUFFIX, parse_subband_name
from dsa110d.services.watcher import HDF5EventHandler
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import ENTRY_FIELD

START = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
"""Start of the tests' tiny simulation (inside the bundled IERS tables' range)."""
N_SETS = 3
N_SUBBANDS = 4
FAST = {
    "services__hdf5_watcher__stability_interval_sec": 0.05,
    "services__hdf5_watcher__expected_subbands": N_SUBBANDS,
}


def by_set(files: list[Path]) -> list[list[Path]]:
    """Files grouped per set (by name minute: the tiny sets are 309 s apart), by subband."""
    groups: dict[tuple[int, int], list[Path]] = {}
    for f in files:
        name = parse_subband_name(f)
        assert name is not None
        groups.setdefault((name.timestamp.hour, name.timestamp.minute), []).append(f)
    return [sorted(g, key=_subband) for _, g in sorted(groups.items())]


def _subband(path: Path) -> int:
    name = parse_subband_name(path)
    assert name is not None
    return name.subband


def land(source: Path, incoming: Path, name: str | None = None) -> Path:
    """Copy a subband in as the correlator does: written as ``_incomplete``, then renamed."""
    final = incoming / (name or source.name)
    temporary = final.with_name(final.name.replace(".hdf5", INCOMPLETE_SUFFIX))
    shutil.copyfile(source, temporary)
    os.replace(temporary, final)
    return final


def land_all(sources: Iterable[Path], incoming: Path) -> list[Path]:
    """Each file landed in turn (:func:`land`); their paths in incoming."""
    return [land(source, incoming) for source in sources]


async def started_on(config: Config, redis: Redis, files: Iterable[Path]) -> HDF5EventHandler:
    """A watcher started (its start-up scan done) once ``files`` have landed in incoming."""
    land_all(files, config.paths.incoming_dir)
    handler = HDF5EventHandler(config, redis)
    await handler.start()
    return handler


def fingerprint(paths: list[Path]) -> dict[str, tuple[str, int, int]]:
    """sha256, size and mtime of each file (to prove the watcher never modifies input)."""
    found = {}
    for p in paths:
        info = p.stat()
        found[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), info.st_size, info.st_mtime_ns)
    return found


async def announced(redis: Redis, config: Config) -> list[Message]:
    """Every HDF5_PROCESSING message on the stream, oldest first."""
    stream = Keys(config.redis.namespace).stream(MessageType.HDF5_PROCESSING.value)
    entries = await redis.xrange(stream)
    return [decode(fields[ENTRY_FIELD], 1 << 20) for _, fields in entries]


def announced_paths(message: Message) -> list[str]:
    """The subband paths an HDF5_PROCESSING message names, in subband order."""
    return list(SetAnnounced.from_payload(message.payload, message.id).paths())


CRASH_MARKER = b"SIGSEGV ME"
"""A file starting with these bytes kills the probe process that looks at it (see below)."""
HANG_MARKER = b"HANG ME"
"""A file starting with these bytes hangs the probe process that looks at it (see below)."""


def probe_or_crash(paths: list[str], root: str) -> list[dict[str, Any]]:
    """The probe job, except that a file starting with CRASH_MARKER kills the probe process
    with a real SIGSEGV, as libhdf5 would on a file that trips one of its bugs, and one
    starting with HANG_MARKER hangs it (run in a worker process: never in the test's own)."""
    for path in paths:
        with contextlib.suppress(OSError), open(path, "rb") as handle:
            head = handle.read(max(len(CRASH_MARKER), len(HANG_MARKER)))
        if head.startswith(CRASH_MARKER):
            os.kill(os.getpid(), signal.SIGSEGV)
        if head.startswith(HANG_MARKER):
            time.sleep(3600)
    return ingest.probe_files(paths, root)


def probe_noting_pid(paths: list[str], root: str) -> list[dict[str, Any]]:
    """The probe job, noting which process probed (a line per job in ROOT/../probe-pids)."""
    with open(Path(root).parent / "probe-pids", "a") as out:
        out.write(f"{os.getpid()}\n")
    return ingest.probe_files(paths, root)
