"""A process that tries once to take a lease at an agreed instant and prints its token or 'none'.

Usage: python lease_racer.py URL NAMESPACE LEASE START_AT_UNIX_SEC
"""

from __future__ import annotations

import sys
import time

import anyio

from dsa110d.config import LeasesConfig
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases


async def main(url: str, namespace: str, name: str, start_at: float) -> None:
    client = Redis.from_url(url, decode_responses=True)
    leases = Leases(client, Keys(namespace), LeasesConfig(ttl_sec=30, renew_interval_sec=10))
    await client.ping()  # connect before the start line, so only the acquire races
    await anyio.sleep(max(0.0, start_at - time.time()))
    lease = await leases.acquire(name)
    print(lease.token if lease else "none", flush=True)
    await client.aclose()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
