"""Reliable streams vs arq: no-op messages through publish, consume and ack, on the same server.

Ours runs with every guarantee on: idempotent publish (Lua dedup marker + XADD), consumer
group delivery, a live heartbeat, envelope validation, ack only after the handler returned.
arq (the baseline, same server, same run) enqueues and runs the same number of no-op jobs with
a JSON serialiser (we allow no pickle) and result logging off, twice: with its defaults
(10 concurrent jobs, a 0.5 s poll) and tuned (ARQ_TUNED); the headline ratio is against the
tuned arq. Figures:

* throughput: N enqueued, then drained; jobs/s = N / (enqueue time + drain time), both;
* latency: enqueue-to-handler-start at a paced 1,000 msg/s for 3 s, p50/p99 (ours: three
  runs, each reported, and their median; the tuned arq: one run).

The server is the system Redis at 127.0.0.1:6379 (db 0, a unique namespace, deleted
afterwards) when it answers, else an embedded Valkey in a temporary directory.
``BENCH_STREAMS_N`` sets N (default 5000).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import Worker, func

from bench.common import ratio, report
from dsa110d.config import RetryConfig, StreamsConfig
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.state import embedded
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import Delivery
from dsa110d.state.streams import ReliableStream

N = int(os.environ.get("BENCH_STREAMS_N", "5000"))
PACED_RATE = 1000.0  # msg/s
PACED_SEC = 3.0
LATENCY_RUNS = 3  # the machine is shared: report every run and the median
SYSTEM_REDIS = ("127.0.0.1", 6379)
PRODUCER = Producer("bench", os.getpid(), "bench")


class Server:
    """Where both contenders run: one URL, and the arq settings for the same place."""

    def __init__(self, url: str, settings: RedisSettings, kind: str) -> None:
        self.url = url
        self.settings = settings
        self.kind = kind


async def pick_server(tmp: Path) -> Server:
    host, port = SYSTEM_REDIS
    probe = aioredis.Redis(host=host, port=port, socket_connect_timeout=1)
    try:
        await probe.ping()
        return Server(
            f"redis://{host}:{port}/0", RedisSettings(host=host, port=port), "system redis"
        )
    except (OSError, aioredis.ConnectionError):
        server = embedded.ensure_server(tmp)
        return Server(
            server.url,
            RedisSettings(unix_socket_path=str(server.socket_path)),
            "embedded valkey",
        )
    finally:
        await probe.aclose()


def make_stream(client: aioredis.Redis, namespace: str) -> ReliableStream:
    return ReliableStream(
        client,
        Keys(namespace),
        MessageType.HDF5_PROCESSING,
        "bench",
        StreamsConfig(),
        RetryConfig(),
    )


# ------------------------------------------------------------------------ ours
async def ours_throughput(client: aioredis.Redis, namespace: str) -> dict[str, float]:
    stream = make_stream(client, namespace)
    await stream.ensure_group()
    done = anyio.Event()
    handled = 0

    async def noop(delivery: Delivery) -> None:
        nonlocal handled
        handled += 1
        if handled == N:
            done.set()

    start = time.perf_counter()
    for i in range(N):
        await stream.publish(new_message(MessageType.HDF5_PROCESSING, {"i": i}, PRODUCER), f"e{i}")
    enqueued = time.perf_counter()
    consumer = StreamConsumer(stream, "bench-consumer", noop, batch=128)
    async with anyio.create_task_group() as tg:
        await tg.start(consumer.run)
        await done.wait()
        drained = time.perf_counter()
        while (await stream.stats()).pending:
            await anyio.sleep(0.001)
        acked = time.perf_counter()
        tg.cancel_scope.cancel()
    return _throughput(start, enqueued, acked, drained)


async def ours_latency(client: aioredis.Redis, namespace: str) -> list[float]:
    stream = make_stream(client, namespace)
    await stream.ensure_group()
    latencies: list[float] = []

    async def record(delivery: Delivery) -> None:
        latencies.append(time.time() - delivery.message.payload["t"])

    consumer = StreamConsumer(stream, "bench-latency", record, batch=128)
    async with anyio.create_task_group() as tg:
        await tg.start(consumer.run)

        async def publish(i: int) -> None:
            payload = {"i": i, "t": time.time()}
            message = new_message(MessageType.HDF5_PROCESSING, payload, PRODUCER)
            await stream.publish(message, f"lat{i}")

        count = await paced(publish)
        with anyio.fail_after(30):
            while len(latencies) < count:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    return latencies


async def paced(send: Any) -> int:
    """Call ``send(i)`` at PACED_RATE for PACED_SEC on an absolute schedule; returns count."""
    count = int(PACED_RATE * PACED_SEC)
    t0 = time.perf_counter()
    for i in range(count):
        delay = t0 + i / PACED_RATE - time.perf_counter()
        if delay > 0:
            await anyio.sleep(delay)
        await send(i)
    return count


# ------------------------------------------------------------------------ arq
def _json_dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _json_loads(raw: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(raw)
    return loaded


async def arq_pool(server: Server, queue: str) -> ArqRedis:
    return await create_pool(
        server.settings,
        job_serializer=_json_dumps,
        job_deserializer=_json_loads,
        default_queue_name=queue,
    )


# arq's defaults poll every 0.5 s; tuned, it polls every 5 ms with 100 concurrent jobs, the
# best we found for no-op jobs. The headline ratio is against the tuned arq.
ARQ_DEFAULTS: dict[str, Any] = {}
ARQ_TUNED: dict[str, Any] = {"poll_delay": 0.005, "max_jobs": 100}


def arq_worker(pool: ArqRedis, queue: str, job: Any, burst: bool, tuning: dict[str, Any]) -> Worker:
    return Worker(
        **tuning,
        functions=[func(job, name="noop")],
        redis_pool=pool,
        queue_name=queue,
        burst=burst,
        handle_signals=False,
        keep_result=0,
        log_results=False,
        job_serializer=_json_dumps,
        job_deserializer=_json_loads,
    )


async def arq_throughput(
    server: Server, namespace: str, tuning: dict[str, Any]
) -> dict[str, float]:
    queue = f"{namespace}:arq:queue"
    pool = await arq_pool(server, queue)
    done = 0

    async def noop(ctx: dict[str, Any], i: int) -> None:
        nonlocal done
        done += 1

    start = time.perf_counter()
    for i in range(N):
        await pool.enqueue_job("noop", i, _job_id=f"{namespace}-t{i}")
    enqueued = time.perf_counter()
    worker = arq_worker(pool, queue, noop, burst=True, tuning=tuning)
    await worker.async_run()  # burst: returns when the queue is empty and jobs are done
    acked = time.perf_counter()
    await worker.close()
    assert done == N, f"arq ran {done} of {N} jobs"
    return _throughput(start, enqueued, acked, acked)


async def arq_latency(server: Server, namespace: str, tuning: dict[str, Any]) -> list[float]:
    queue = f"{namespace}:arq:latency"
    pool = await arq_pool(server, queue)
    latencies: list[float] = []

    async def record(ctx: dict[str, Any], sent: float) -> None:
        latencies.append(time.time() - sent)

    worker = arq_worker(pool, queue, record, burst=False, tuning=tuning)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.async_run)

        async def enqueue(i: int) -> None:
            await pool.enqueue_job("noop", time.time(), _job_id=f"{namespace}-l{i}")

        count = await paced(enqueue)
        with anyio.fail_after(30):
            while len(latencies) < count:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    await worker.close()
    return latencies


# ------------------------------------------------------------------------ shared
def _throughput(start: float, enqueued: float, acked: float, drained: float) -> dict[str, float]:
    return {
        "jobs_per_sec": N / (acked - start),
        "enqueue_per_sec": N / (enqueued - start),
        "drain_per_sec": N / (acked - enqueued),
        "handled_by_sec": drained - start,
    }


def percentiles_ms(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max_ms": 1000 * ordered[-1],
        "count": len(ordered),
    }


async def cleanup(client: aioredis.Redis, namespace: str) -> None:
    for pattern in (f"{namespace}*", f"arq:*{namespace}*"):
        async for key in client.scan_iter(match=pattern, count=1000):
            await client.delete(key)


async def run(tmp: Path) -> dict[str, Any]:
    logging.getLogger("arq").setLevel(logging.WARNING)
    server = await pick_server(tmp)
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        ours = await ours_throughput(client, namespace)
        arq = await arq_throughput(server, namespace + "-tuned", ARQ_TUNED)
        arq_default = await arq_throughput(server, namespace + "-default", ARQ_DEFAULTS)
        ours_lat_runs = []
        for run_number in range(LATENCY_RUNS):
            gc.collect()
            lat = await ours_latency(client, f"{namespace}-lat{run_number}")
            ours_lat_runs.append(percentiles_ms(lat))
        ours_p99_ms = statistics.median(r["p99_ms"] for r in ours_lat_runs)
        ours_lat = {
            "p50_ms": statistics.median(r["p50_ms"] for r in ours_lat_runs),
            "p99_ms": ours_p99_ms,
            "runs": ours_lat_runs,
        }
        gc.collect()
        arq_lat = percentiles_ms(await arq_latency(server, namespace + "-tuned", ARQ_TUNED))
    finally:
        await cleanup(client, namespace)
        await client.aclose()
        if server.kind == "embedded valkey":
            embedded.stop_server(tmp)
    return {
        "server": server.kind,
        "messages": N,
        "ours": ours,
        "arq_tuned": {**arq, "settings": ARQ_TUNED},
        "arq_defaults": arq_default,
        "throughput_ratio": ratio(ours["jobs_per_sec"], arq["jobs_per_sec"]),
        "throughput_ratio_vs_arq_defaults": ratio(
            ours["jobs_per_sec"], arq_default["jobs_per_sec"]
        ),
        "latency_at_1000_per_sec": {"ours": ours_lat, "arq_tuned": arq_lat},
        "goal": {
            "throughput_ratio_at_least": 2.0,
            "p99_ms_at_most": 5.0,
            "met": ratio(ours["jobs_per_sec"], arq["jobs_per_sec"]) >= 2.0 and ours_p99_ms <= 5.0,
        },
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        figures = anyio.run(run, Path(tmp))
    report("streams", figures)


if __name__ == "__main__":
    main()
