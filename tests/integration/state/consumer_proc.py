"""A consumer process for the crash test: applies an idempotent effect per message, and hangs
forever (after the effect, before the ack) on a message whose payload says ``hang``.

Usage: python consumer_proc.py URL NAMESPACE CONSUMER_NAME
Prints ``effect <n>`` after each effect and ``hanging <n>`` before hanging.
"""

from __future__ import annotations

import sys

import anyio
from statekit import FAST, apply_effect  # type: ignore[import-not-found]

from dsa110d.config import RetryConfig, StreamsConfig
from dsa110d.messages import MessageType
from dsa110d.state.connection import Redis
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import Delivery
from dsa110d.state.streams import ReliableStream


async def main(url: str, namespace: str, name: str) -> None:
    client = Redis.from_url(url, decode_responses=True)
    streams = StreamsConfig(
        heartbeat_interval_sec=FAST["streams__heartbeat_interval_sec"],
        heartbeat_ttl_sec=FAST["streams__heartbeat_ttl_sec"],
        read_block_ms=100,
    )
    keys = Keys(namespace)
    stream = ReliableStream(
        client, keys, MessageType.HDF5_PROCESSING, "workers", streams, RetryConfig()
    )

    async def handler(delivery: Delivery) -> None:
        n = delivery.message.payload["n"]
        await apply_effect(client, keys, delivery.message.id, name)
        print(f"effect {n}", flush=True)
        if delivery.message.payload.get("hang"):
            print(f"hanging {n}", flush=True)
            await anyio.sleep_forever()

    await StreamConsumer(stream, name, handler).run()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])
