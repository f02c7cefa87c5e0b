"""Four short, runnable tours of dsa110d's services, each on a private embedded server in a
temporary directory (nothing to set up, nothing left behind).

Run them all::

    python examples/service_examples.py

or one at a time::

    import asyncio
    from service_examples import example_service_manager
    asyncio.run(example_service_manager())

Each starts a real daemon (:func:`dsa110d.supervisor.run_daemon`, the code behind
``dsa110d run``) in this process with the ``testing`` environment, does one thing with its
service, prints what ``dsa110ctl status`` would show, and stops the daemon with SIGTERM exactly
as systemd would. Each returns what it observed, so a test can check it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pandas as pd

from dsa110d import logs
from dsa110d.config import Config, load_config
from dsa110d.lifecycle import run_daemon
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.operations.queues import queue_stats
from dsa110d.operations.records import SetRow, latest_candidates, list_blocks, list_sets
from dsa110d.operations.status import ServiceStatus, service_status
from dsa110d.science.atomic import atomic_file
from dsa110d.science.simulation.simulate import SimulationSpec, simulate
from dsa110d.services.base import load_service_modules
from dsa110d.state import embedded
from dsa110d.state.blocks import Blocks
from dsa110d.state.candidates import CandidateReport
from dsa110d.state.connection import connected
from dsa110d.state.control import ControlChannel, ControlCommand
from dsa110d.state.keys import Keys
from dsa110d.state.streams import ReliableStream

SERVICES_YAML = Path(__file__).resolve().parents[1] / "etc" / "dsa110" / "services.yaml"
START_TIMEOUT_SEC = 90.0  # generous: shared CI machines are slow


# --------------------------------------------------------------------------- the sandbox


def sandbox_config(root: Path) -> Config:
    """The testing environment with every path under ``root`` and its own embedded server."""
    environ = {
        "DSA110__REDIS__EMBEDDED": "true",
        "DSA110__SUPERVISOR__WORKERS": "1",
        **{
            f"DSA110__PATHS__{key.upper()}": str(root / key.removesuffix("_dir"))
            for key in (
                "incoming_dir",
                "ms_dir",
                "results_dir",
                "processed_dir",
                "state_dir",
                "log_dir",
            )
        },
    }
    source = SERVICES_YAML if SERVICES_YAML.exists() else None
    return load_config(source, "testing", environ)


@contextlib.asynccontextmanager
async def sandbox() -> AsyncIterator[Config]:
    """A temporary directory and a config pointing into it; the embedded server is stopped
    and the directory removed afterwards."""
    logs.configure(level="WARNING", fmt="console")
    load_service_modules()  # register the built-in services, as ``dsa110d run`` does
    with tempfile.TemporaryDirectory(prefix="dsa110d-example-") as tmp:
        config = sandbox_config(Path(tmp))
        for path in config.paths.data_roots():
            path.mkdir(parents=True, exist_ok=True)
        try:
            yield config
        finally:
            embedded.stop_server(config.paths.state_dir)


@contextlib.asynccontextmanager
async def running_daemon(config: Config, services: list[str]) -> AsyncIterator[None]:
    """``dsa110d run --services ...`` in this process, until SIGTERM at the end of the block."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_daemon, config, services)
        with anyio.fail_after(START_TIMEOUT_SEC):
            while not await _all_running(config, services):
                await anyio.sleep(0.1)
        try:
            yield
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the daemon's own signal handling stops it


async def _all_running(config: Config, services: list[str]) -> bool:
    rows = await service_status(config, wait_sec=0)
    return {r.service for r in rows if r.state == "running"} >= set(services)


def show(rows: list[ServiceStatus]) -> None:
    for r in rows:
        print(f"  {r.service:<10} {r.state:<8} {r.health:<9} {r.reason or '-'} (pid {r.pid})")


# --------------------------------------------------------------------------- the examples


async def land_simulated_set(config: Config) -> None:
    """One tiny simulated set (the testing environment's ``expected_subbands``) written into
    ``incoming_dir`` the way the correlator writes it: ``_incomplete``, then renamed."""
    spec = SimulationSpec(
        out=config.paths.incoming_dir,
        start=datetime(2026, 3, 20, 6, 0, tzinfo=UTC),
        sets=1,
        scale="tiny",
        n_subbands=config.services.hdf5_watcher.expected_subbands,
        truth=config.paths.results_dir / "truth.json",
    )
    await anyio.to_thread.run_sync(simulate, spec)


async def wait_for_sets(config: Config, state: str) -> list[SetRow]:
    with anyio.fail_after(START_TIMEOUT_SEC):
        while not (sets := await list_sets(config, state)):
            await anyio.sleep(0.2)
    return sets


async def example_hdf5_watcher() -> list[SetRow]:
    """The HDF5 watcher turns subband files into a set record and one announcement.

    A tiny simulated set (4 subbands, the testing environment's ``expected_subbands``) lands
    in ``incoming_dir`` the way the correlator writes it (``_incomplete`` then renamed); the
    watcher groups the files by their ``time_array[0]``, sees the set complete and queues it
    for the processor (HDF5_PROCESSING), exactly once.
    """
    async with sandbox() as config, running_daemon(config, ["watcher"]):
        await land_simulated_set(config)
        sets = await wait_for_sets(config, "queued")
        queue = next(q for q in await queue_stats(config) if q.message_type == "HDF5_PROCESSING")
        for row in sets:
            print(f"set {row.set_id}: {row.state}, {row.subbands}/{row.expected} subbands")
        print(f"HDF5_PROCESSING: length {queue.length} (one announcement per set)")
        show(await service_status(config, "watcher"))
        return sets


async def example_ms_processor() -> dict[str, Any]:
    """The MS processor converts each announced set into a Measurement Set (a chunk) and
    records the blocks the chunk belongs to.

    A tiny simulated set lands, the watcher announces it, and the processor (in a worker
    process) writes ``ms_dir/<set id>.ms`` atomically, records the chunk and its blocks, and
    marks the set converted. (The block pipeline runs once a block is complete or overdue,
    which a single 5-minute chunk of a 60-minute block is not yet.)
    """
    async with sandbox() as config, running_daemon(config, ["watcher", "processor"]):
        await land_simulated_set(config)
        sets = await wait_for_sets(config, "converted")
        async with connected(config) as redis:
            chunks = await Blocks(redis, Keys(config.redis.namespace)).chunks()
        blocks = await list_blocks(config)
        for chunk in chunks:
            print(f"chunk {chunk.chunk_id}: {chunk.end - chunk.start:.0f} s in {chunk.path}")
        for block in blocks:
            print(f"block {block.block_id}: {block.state} (runs once complete or overdue)")
        return {"sets": sets, "chunks": chunks, "blocks": blocks}


def write_photometry(results_dir: Path, block: int) -> str:
    """One block's forced photometry as the processor publishes it (one Parquet file per
    block, atomically): 20 steady sources, one variable, and one that appears in block 3."""
    block_id = f"2026-01-01T{block:02d}:00:00"
    rng = np.random.default_rng(block)
    ids = [f"S{i:03d}" for i in range(20)] + ["VAR1", "NEW1"]
    level = np.concatenate(
        [np.linspace(0.1, 1.0, 20), [1.0 + 0.5 * np.sin(1.7 * block)], [0.5 if block >= 3 else 0.0]]
    )
    err = np.full(len(ids), 0.005)
    frame = pd.DataFrame(
        {
            "source_id": pd.array(ids, dtype="string"),
            "ra_deg": np.linspace(10.0, 20.0, len(ids)),
            "dec_deg": np.full(len(ids), 33.0),
            "block_id": pd.array([block_id] * len(ids), dtype="string"),
            "mjd": 61000.0 + block / 24.0 + np.zeros(len(ids)),
            "flux_jy": level + rng.normal(0.0, 1.0, len(ids)) * err,
            "flux_err_jy": err,
            "n_vis": np.full(len(ids), 4000, dtype="int64"),
            "beam_gain": np.full(len(ids), 0.8),
            "flags": pd.array([""] * len(ids), dtype="string"),
            "version": np.ones(len(ids), dtype="int64"),
        }
    )
    with atomic_file(results_dir / "photometry" / f"{block_id}.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    return block_id


async def example_variability_analyzer() -> CandidateReport:
    """The variability analyzer turns block photometry into ranked candidates.

    Six blocks of photometry land in ``results_dir/photometry`` and the processor's six
    MS_PROCESSING block announcements follow; the analyzer coalesces them into one run and
    publishes the candidates (what ``dsa110ctl candidates`` shows): the new source as a
    transient and the modulated one as a variable.
    """
    async with sandbox() as config, running_daemon(config, ["analyzer"]):
        async with connected(config) as redis:
            stream = ReliableStream(
                redis,
                Keys(config.redis.namespace),
                MessageType.MS_PROCESSING,
                "processor",
                config.streams,
                config.retry,
            )
            for block in range(6):
                block_id = write_photometry(config.paths.results_dir, block)
                payload = {"kind": "block", "block_id": block_id}
                message = new_message(MessageType.MS_PROCESSING, payload, Producer.here("example"))
                await stream.publish(message)
        with anyio.fail_after(START_TIMEOUT_SEC):
            while (report := await latest_candidates(config)) is None:
                await anyio.sleep(0.2)
        print(f"analysis run {report.run.get('run_time')}: {len(report.candidates)} candidates")
        for c in report.candidates:
            print(f"  {c['rank']}. {c['source_id']:<5} {c['class']:<9} eta {c['eta']:.3g}")
        return report


async def example_service_manager() -> dict[str, list[ServiceStatus]]:
    """The service manager runs all three services in one daemon and obeys control commands:
    pause the processor (``state`` becomes ``paused``, the others run on), then resume it."""
    observed: dict[str, list[ServiceStatus]] = {}
    names = ["watcher", "processor", "analyzer"]
    async with sandbox() as config, running_daemon(config, names):
        observed["started"] = await service_status(config)
        async with connected(config) as redis:
            control = ControlChannel(redis, Keys(config.redis.namespace))
            await control.send(ControlCommand("pause", service="processor"))
            await anyio.sleep(0.5)
            observed["paused"] = await service_status(config)
            await control.send(ControlCommand("resume", service="processor"))
            await anyio.sleep(0.5)
            observed["resumed"] = await service_status(config)
        for stage, rows in observed.items():
            print(f"{stage}:")
            show(rows)
    return observed


EXAMPLES = (
    example_hdf5_watcher,
    example_ms_processor,
    example_variability_analyzer,
    example_service_manager,
)


async def main() -> None:
    for example in EXAMPLES:
        print(f"== {example.__name__}")
        await example()


if __name__ == "__main__":
    anyio.run(main)
