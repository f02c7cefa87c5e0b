"""An event-driven watch of one directory on Linux inotify: the watcher's idle wait.

watchfiles' notify loop wakes every ``step`` milliseconds (it takes the GIL to look at its
queue and its stop event), about 0.5 % of a core while nothing happens; this watch blocks on
the inotify descriptor (:func:`anyio.wait_readable`) and wakes only when the kernel has
events. A batch is gathered as watchfiles does: it closes ``step_ms`` after the last event,
at most ``debounce_ms`` after the first.

Yields the set of paths that were created, moved in, written or closed after writing; an
empty set when the kernel's queue overflowed (events were lost: the caller rescans).
Linux only (:func:`available`); elsewhere, and for network filesystems where inotify sees
nothing (``force_polling``), the watcher keeps watchfiles.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from dsa110d.errors import InputFileError

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

WATCH_MASK = IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF
GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED
READ_BYTES = 1 << 16
_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then name)


def available() -> bool:
    return sys.platform.startswith("linux")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def parse_events(buffer: bytes) -> tuple[list[str], int]:
    """(names, OR of the masks) of the inotify events in ``buffer``."""
    names: list[str] = []
    masks = 0
    offset = 0
    while offset + _HEADER.size <= len(buffer):
        _, mask, _, length = _HEADER.unpack_from(buffer, offset)
        offset += _HEADER.size
        name = buffer[offset : offset + length].rstrip(b"\0")
        offset += length
        masks |= mask
        if name:
            names.append(os.fsdecode(name))
    return names, masks


class DirectoryWatch:
    """``async with DirectoryWatch(root) as watch: async for paths in watch.batches(...)``.

    The watch is armed when the context is entered: events from then on are queued by the
    kernel until read."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fd = -1

    async def __aenter__(self) -> DirectoryWatch:
        libc = _libc()
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise InputFileError(f"{self.root}: inotify_init1: {os.strerror(code)}")
        wd = libc.inotify_add_watch(fd, os.fsencode(self.root), WATCH_MASK | IN_ONLYDIR)
        if wd < 0:
            code = ctypes.get_errno()
            os.close(fd)
            raise InputFileError(f"{self.root}: cannot watch the directory: {os.strerror(code)}")
        self.fd = fd
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            anyio.notify_closing(fd)
            os.close(fd)

    def _read(self) -> tuple[list[str], int]:
        names: list[str] = []
        masks = 0
        while True:
            try:
                buffer = os.read(self.fd, READ_BYTES)
            except BlockingIOError:
                return names, masks
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise InputFileError(f"{self.root}: reading inotify events: {exc}") from None
            more, mask = parse_events(buffer)
            names += more
            masks |= mask

    async def batches(self, debounce_ms: int, step_ms: int) -> AsyncIterator[set[str]]:
        """Batches of changed paths, as they come; an empty set after a queue overflow."""
        while True:
            await anyio.wait_readable(self.fd)  # no timeout: no wake-up without an event
            names, masks = self._read()
            deadline = anyio.current_time() + debounce_ms / 1000
            while True:  # gather the rest of a burst: step_ms quiet, or debounce_ms in all
                quiet = min(step_ms / 1000, deadline - anyio.current_time())
                if quiet <= 0:
                    break
                with anyio.move_on_after(quiet) as scope:
                    await anyio.wait_readable(self.fd)
                if scope.cancelled_caught:
                    break
                more, mask = self._read()
                names += more
                masks |= mask
            if masks & GONE:
                raise InputFileError(f"{self.root}: the watched directory was removed or moved")
            if masks & IN_Q_OVERFLOW:
                yield set()
                continue
            yield {str(self.root / name) for name in names}
