"""Count the event loop's wake-ups: how often an idle task makes the loop run.

Each pass of an asyncio loop calls its selector's ``select``; when nothing is ready to run it
blocks there until a timer is due or an fd is ready, and that return is a wake-up. A loop
whose tasks all wait on events and fds without deadlines selects with ``timeout=None`` and
wakes only when something happens.

Use with the anyio pytest plugin: ``anyio_backend`` returning :data:`COUNTING_BACKEND` runs the
test (and its async fixtures) on a loop whose selector counts; :func:`wakeups_during`
measures an idle window.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

import anyio

_selectors: list[CountingSelector] = []


class CountingSelector(selectors.DefaultSelector):
    """The default selector, counting the selects that may block (timeout None or > 0):
    each is the loop going to sleep, so each return is a wake-up (the selects with timeout
    0 are the loop running through work that was ready already)."""

    def __init__(self) -> None:
        super().__init__()
        self.selects = 0

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None or timeout > 0:
            self.selects += 1
        return super().select(timeout)


def _counting_loop() -> asyncio.AbstractEventLoop:
    selector = CountingSelector()
    _selectors.append(selector)
    return asyncio.SelectorEventLoop(selector)


COUNTING_BACKEND: tuple[str, dict[str, object]] = ("asyncio", {"loop_factory": _counting_loop})


async def wakeups_during(seconds: float) -> int:
    """Loop wake-ups over an idle window of ``seconds`` (less the two of the window's own
    sleep: the one that starts it and the one that ends it)."""
    selector = _selectors[-1]
    await anyio.sleep(0)
    before = selector.selects
    await anyio.sleep(seconds)
    return max(0, selector.selects - before - 2)


async def settled(window_sec: float = 0.3, within_sec: float = 5.0) -> None:
    """Wait until a window of ``window_sec`` passes with at most one wake-up (start-up work,
    slow on a loaded machine, is done), for at most ``within_sec``."""
    with anyio.move_on_after(within_sec):
        while await wakeups_during(window_sec) > 1:
            pass
