"""Running work in forked children: one at a time so that its failures cannot take the caller
down, or several at once on independent inputs.

casacore throws C++ exceptions from table destructors when a write fails (a full disk, a
file size limit): that aborts the whole process. The writer therefore runs in a child made
with ``fork`` (it inherits the planned layout without any serialisation); the child reports
one JSON line on a pipe and leaves with ``os._exit``, so no destructor runs after a failure.
:func:`run_forked_each` runs independent items (Measurement Sets to flag) in a few such
children at once: only the item (a path) and the JSON report cross, no data is pickled.
"""

from __future__ import annotations

import json
import os
import select
import signal
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dsa110d import errors
from dsa110d.errors import ConversionError, DSA110Error

Item = TypeVar("Item")
Report = dict[str, Any]
READ_BYTES = 65536


def run_forked(what: str, work: Callable[[], Report]) -> Report:
    """Run ``work`` in a forked child and return its JSON-able result; its DSA110Error comes
    back as the same class, any other failure or a crash as a ConversionError about ``what``."""
    return run_forked_each([what], lambda _: work(), processes=1, failure=ConversionError)[0]


def run_forked_each(
    items: Sequence[Item],
    work: Callable[[Item], Report],
    *,
    processes: int,
    failure: type[DSA110Error],
    name: Callable[[Item], str] = str,
) -> list[Report]:
    """``work(item)`` for every item, each in its own forked child, at most ``processes`` at
    once; the JSON-able results in the items' order.

    A child's DSA110Error comes back as the same class with its message; any other exception,
    a crash (a signal) or a missing report as ``failure`` with a message naming the item
    (``name(item)``). After a failure no further child starts; those running are waited for
    (none is killed mid-write), then the failure of the earliest item is raised.
    """
    results: list[Report | None] = [None] * len(items)
    failed: dict[int, DSA110Error] = {}
    waiting = list(range(len(items)))[::-1]
    running: dict[int, tuple[int, int, bytearray]] = {}  # read fd -> (item, pid, report)
    while running or (waiting and not failed):
        while waiting and not failed and len(running) < max(1, processes):
            index = waiting.pop()
            read_fd, pid = _fork(work, items[index])
            running[read_fd] = (index, pid, bytearray())
        ready, _, _ = select.select(list(running), [], [])
        for fd in ready:
            chunk = os.read(fd, READ_BYTES)
            if chunk:
                running[fd][2].extend(chunk)
                continue
            index, pid, report = running.pop(fd)
            os.close(fd)
            _, status = os.waitpid(pid, 0)
            try:
                results[index] = _outcome(name(items[index]), status, bytes(report), failure)
            except DSA110Error as exc:
                failed[index] = exc
    if failed:
        raise failed[min(failed)]
    return [r for r in results if r is not None]


def _fork(work: Callable[[Item], Report], item: Item) -> tuple[int, int]:
    """Start ``work(item)`` in a child; the read end of its report pipe and its pid."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(write_fd, lambda: work(item))
    os.close(write_fd)  # before the next fork, so that no other child holds this pipe open
    return read_fd, pid


def _outcome(what: str, status: int, report: bytes, failure: type[DSA110Error]) -> Report:
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise failure(f"{what}: the child process died of {name}")
    try:
        record: Report = json.loads(report)
    except ValueError:
        raise failure(f"{what}: the child process exited without a report") from None
    if "error" in record:
        known = getattr(errors, record["error"], None)
        if isinstance(known, type) and issubclass(known, DSA110Error):
            raise known(record["message"])
        raise failure(f"{what}: {record['error']}: {record['message']}")
    return record


def _child(write_fd: int, work: Callable[[], Report]) -> None:
    code = 0
    try:
        record = work()
    except BaseException as exc:  # report anything; the parent decides what it means
        record, code = {"error": type(exc).__name__, "message": str(exc)}, 1
    try:
        os.write(write_fd, json.dumps(record).encode())
    finally:
        os._exit(code)
