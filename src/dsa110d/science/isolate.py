"""Running a casacore writer in a forked child, so its failures cannot take the caller down.

casacore throws C++ exceptions from table destructors when a write fails (a full disk, a
file size limit): that aborts the whole process. The writer therefore runs in a child made
with ``fork`` (it inherits the planned layout without any serialisation); the child reports
one JSON line on a pipe and leaves with ``os._exit``, so no destructor runs after a failure.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from typing import Any

from dsa110d.errors import ConversionError, DSA110Error, InputFileError

_ERRORS: dict[str, type[DSA110Error]] = {
    "InputFileError": InputFileError,
    "ConversionError": ConversionError,
}


def run_forked(what: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` in a forked child and return its JSON-able result; its DSA110Error comes
    back as the same class, any other failure or a crash as a ConversionError about ``what``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(write_fd, work)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise ConversionError(f"{what}: the writer process died of {name}")
    try:
        record: dict[str, Any] = json.loads(report)
    except ValueError:
        raise ConversionError(f"{what}: the writer process exited without a report") from None
    if "error" in record:
        raise _ERRORS.get(record["error"], ConversionError)(record["message"])
    return record


def _child(write_fd: int, work: Callable[[], dict[str, Any]]) -> None:
    code = 0
    try:
        record = work()
    except DSA110Error as exc:
        record, code = {"error": type(exc).__name__, "message": str(exc)}, 1
    except BaseException as exc:  # report anything; the parent decides what it means
        record, code = {"error": type(exc).__name__, "message": str(exc)}, 1
    try:
        os.write(write_fd, json.dumps(record).encode())
    finally:
        os._exit(code)
