"""Recorded pipeline state for the console's tests (and bench/bench_web.py): sets, blocks,
dead letters, candidates and alerts written through the state layer the services use, and the
result files the processor and analyzer publish (photometry Parquet, the run's table, the
candidates JSON), so that every page has something real to show.

Some of it is hostile on purpose: a dead letter whose reason is a script tag and a result file
named with markup, which the console must show as text.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
import pandas as pd

from dsa110d.config import Config
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.state.alerts import AlertStore, Condition
from dsa110d.state.blocks import Blocks, BlockSpan, ChunkRecord
from dsa110d.state.candidates import CandidateStore
from dsa110d.state.connection import Redis, lending
from dsa110d.state.keys import Keys
from dsa110d.state.sets import NewFile, SetError, Sets
from dsa110d.state.streams import ReliableStream

T0 = 1795000000.0  # 2026-11-18T...Z: a round hour below
HOUR = 3600.0
SET_SEC = 309.237648
XSS_REASON = '<script>window.xss = 1</script><img src=x onerror="window.xss = 2">'
XSS_FILE = '<img src=x onerror="window.xss=3">.json'
XSS_SOURCE = 'J0000+0000<b id="xss">'
"""A candidate id with markup (the analyzer takes ids from the catalog: untrusted too)."""
FLUX_JY = 1.0
BLOCK_QA = {"flag": {"flagged_total": 1234, "samples": 38400, "flag_fraction": 0.032},
            "photometry": {"sources": 40}}  # fmt: skip
TRANSIENT_JUMP_JY = 4.0


@dataclass(frozen=True)
class Recorded:
    sets: int
    blocks: int
    sources: int
    candidates: list[dict[str, Any]]
    transient: str
    """A transient candidate's id: its light curve jumps at the last block."""
    points: int
    """Measurements in every source's light curve (one per block)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def set_id_at(stamp: float) -> str:
    return pd.Timestamp(stamp, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S")


async def record_sets(config: Config, redis: Redis, count: int, start: float = T0) -> list[str]:
    """``count`` sets a cadence apart: complete (4 of 4), every seventh collecting with a fault."""
    sets = Sets(redis, Keys(config.redis.namespace))
    ids = []
    for n in range(count):
        stamp = start + n * SET_SEC
        set_id = set_id_at(stamp)
        subbands = range(4) if n % 7 else (0, 2)
        for sb in subbands:
            await sets.add_file(
                NewFile(set_id, sb, f"/in/{set_id}_sb{sb:02d}.hdf5", stamp, 2461000.5 + n), 4
            )
        if not n % 7:
            fault = SetError("bad_file", "truncated HDF5", f"/in/{set_id}_sb01.hdf5", stamp)
            await sets.add_error(set_id, fault, name_time=stamp, expected=4)
        ids.append(set_id)
    return ids


async def record_blocks(config: Config, redis: Redis, count: int, start: float = T0) -> None:
    """``count`` hourly blocks, each with one chunk: processed with results, the last failed."""
    blocks = Blocks(redis, Keys(config.redis.namespace))
    for n in range(count):
        begin = start + n * HOUR
        block_id = set_id_at(begin)
        chunk = ChunkRecord(block_id, block_id, begin, begin + SET_SEC, 0.6, f"/ms/{block_id}.ms")
        await blocks.record_chunk(chunk, [BlockSpan(block_id, begin, begin + HOUR)])
        if n == count - 1:
            await blocks.record_failure(block_id, "StageError: flag: <aoflagger> died", 1)
            continue
        pipe = redis.pipeline(transaction=True)
        results = {"photometry": f"photometry/{block_id}.v1.parquet"}
        blocks.stage_commit(
            pipe, block_id, 1, 1, [block_id], [], results, now=begin + HOUR, qa=BLOCK_QA
        )
        await pipe.execute()


async def record_dead_letters(config: Config, redis: Redis, count: int = 2) -> None:
    """``count`` HDF5 messages dead-lettered, the first with a hostile reason."""
    keys = Keys(config.redis.namespace)
    stream = ReliableStream(
        redis, keys, MessageType.HDF5_PROCESSING, "processor", config.streams, config.retry
    )
    await stream.ensure_group()
    producer = Producer("corr01", 1, "tests")
    for n in range(count):
        await stream.publish(new_message(MessageType.HDF5_PROCESSING, {"n": n}, producer))
    entries = await stream.read_new("proc-1", count, None)
    for n, entry in enumerate(entries):
        reason = XSS_REASON if n == 0 else "InputFileError: truncated file"
        attempts = [{"at": T0, "consumer": "proc-1", "delivery": 1, "error": reason}]
        await stream.dead_letter(entry, reason, "proc-1", attempts)


async def record_alert(config: Config, redis: Redis) -> None:
    store = AlertStore(redis, Keys(config.redis.namespace), host="tests")
    condition = Condition(
        "dead-letters:hdf5", "dead_letters_growing", "warning", "2 dead letters <in hdf5>"
    )
    await store.observe(condition, T0, 3600.0)


def sources(count: int) -> list[str]:
    return [f"J{n // 60:02d}{n % 60:02d}+{30 + n % 50:02d}00" for n in range(count)]


def write_results(config: Config, n_sources: int, n_blocks: int) -> Recorded:
    """Photometry for every block (constant sources with noise; one transient jumps at the
    last block, one variable alternates), the run's table and its candidates."""
    rng = np.random.default_rng(7)
    ids = sources(n_sources)
    transient, variable = ids[0], ids[1]
    results = config.paths.results_dir
    (results / "photometry").mkdir(parents=True, exist_ok=True)
    (results / "variability").mkdir(parents=True, exist_ok=True)
    err = 0.01
    for b in range(n_blocks):
        flux = FLUX_JY + rng.normal(0.0, err, n_sources)
        flux[1] = FLUX_JY * (1.5 if b % 2 else 0.5)
        if b == n_blocks - 1:
            flux[0] = TRANSIENT_JUMP_JY
        block_id = set_id_at(T0 + b * HOUR)
        frame = pd.DataFrame(
            {
                "source_id": ids,
                "ra_deg": np.linspace(0, 359, n_sources),
                "dec_deg": np.full(n_sources, 30.0),
                "block_id": block_id,
                "mjd": 61000.0 + b / 24.0,
                "flux_jy": flux,
                "flux_err_jy": err,
                "n_vis": 1000,
                "beam_gain": 0.9,
                "flags": "",
                "version": 1,
            }
        )
        frame.to_parquet(results / "photometry" / f"{block_id}.v1.parquet", index=False)
    eta = rng.chisquare(max(n_blocks - 1, 1), n_sources) / max(n_blocks - 1, 1)
    v = np.abs(rng.normal(0.01, 0.003, n_sources))
    eta[0], v[0], eta[1], v[1] = 5000.0, 0.9, 900.0, 0.5
    classes = ["transient", "variable"] + [None] * (n_sources - 2)
    pd.DataFrame(
        {"source_id": ids, "class": classes, "eta": eta, "v": v, "n": n_blocks,
         "mean_flux_jy": FLUX_JY}
    ).to_parquet(results / "variability" / "latest.parquet", index=False)  # fmt: skip
    candidates = [
        _candidate(transient, "transient", 5000.0, 0.9, n_blocks),
        _candidate(variable, "variable", 900.0, 0.5, n_blocks),
        _candidate(XSS_SOURCE, "variable", 20.0, 0.2, n_blocks),
    ]
    run = "20261118T120000Z"
    document = {"run_time": "2026-11-18T12:00:00+00:00", "candidates": candidates}
    (results / "variability" / f"{run}.candidates.json").write_text(json.dumps(document))
    (results / "variability" / "candidates.json").write_text(json.dumps(document))
    (results / "variability" / XSS_FILE).write_text("{}")
    return Recorded(
        sets=0, blocks=n_blocks, sources=n_sources, candidates=candidates,
        transient=transient, points=n_blocks,
    )  # fmt: skip


def _candidate(source_id: str, kind: str, eta: float, v: float, n: int) -> dict[str, Any]:
    return {
        "source_id": source_id, "class": kind, "ra_deg": 10.0, "dec_deg": 30.0, "n": n,
        "mean_flux_jy": FLUX_JY, "v": v, "eta": eta, "p_constant": math.exp(-eta),
    }  # fmt: skip


async def record_everything(
    config: Config, redis: Redis, *, n_sets: int = 24, n_blocks: int = 6, n_sources: int = 40
) -> Recorded:
    """Everything the console shows, at the given size."""
    await record_sets(config, redis, n_sets)
    await record_blocks(config, redis, n_blocks)
    await record_dead_letters(config, redis)
    await record_alert(config, redis)
    recorded = write_results(config, n_sources, n_blocks)
    run = {"run_time": "2026-11-18T12:00:00+00:00", "n_candidates": len(recorded.candidates)}
    await CandidateStore(redis, Keys(config.redis.namespace)).replace(run, recorded.candidates)
    return Recorded(
        n_sets, n_blocks, n_sources, recorded.candidates, recorded.transient, recorded.points
    )


# --------------------------------------------------------------------------- serving


@contextlib.asynccontextmanager
async def serving(config: Config, redis: Redis, token: str | None = None) -> AsyncIterator[str]:
    """The console's application under Hypercorn in this event loop, as the web service runs
    it (on the lent client); yields its base URL."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config as HypercornConfig

    from dsa110d.web.app import create_app

    port = free_port()
    server = HypercornConfig()
    server.bind = [f"127.0.0.1:{port}"]
    server.accesslog = None
    server.graceful_timeout = 1.0
    stop = anyio.Event()
    app = create_app(lambda: config, token)
    async with anyio.create_task_group() as tg:
        with lending(redis):
            tg.start_soon(functools.partial(serve, app, server, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        url = f"http://127.0.0.1:{port}"
        with anyio.fail_after(20):
            while True:
                try:
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await anyio.sleep(0.05)
        try:
            yield url
        finally:
            stop.set()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def get(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    """One request (stdlib urllib: no client library stands between the test and the server)."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()},
                         response.read())  # fmt: skip
    except urllib.error.HTTPError as error:
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


async def aget(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    return await anyio.to_thread.run_sync(functools.partial(get, url, method, headers))
