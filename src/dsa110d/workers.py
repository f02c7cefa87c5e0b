"""Worker processes for CPU-heavy calls: ``await pool.run(func, *args)``.

A small pool of our own over ``multiprocessing`` (forkserver context) rather than
``ProcessPoolExecutor``, because the executor breaks as a whole when one worker dies, failing
every job in flight; here a dead worker (out of memory, segfault, SIGKILL) fails only its own
job with :class:`~dsa110d.errors.WorkerDiedError`, and the next job gets a fresh worker.

Requests and replies are JSON over a pipe (no pickle): the function travels as
``module:qualname`` and must be a module-level function; arguments and results must be plain
JSON data (paths as strings, dicts, lists, numbers). Each worker imports the configured heavy
modules once, at start-up. Workers ignore SIGINT and SIGTERM: the daemon decides when in-flight
work is abandoned (it then kills the worker), and an idle worker exits when its pipe closes.

**Shrinking when idle** (``idle_sec``): the pool starts no worker up front; a worker is
spawned for a job or by :meth:`WorkerPool.warm` (a hint that work is coming: the watcher calls
it when files start landing, minutes before a set is whole), and retires after ``idle_sec``
without a job, so an idle daemon holds no science stack. The worker times itself out (its
pipe read has a deadline ``idle_sec + RETIRE_GRACE_SEC``: no timer in the daemon) and the pool
never hands out a worker idle longer than ``idle_sec``, so no job meets a worker retiring.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import anyio

from dsa110d import errors
from dsa110d.errors import DSA110Error, WorkerDiedError, WorkerJobError

START_METHOD = "forkserver"
CLOSE_TIMEOUT_SEC = 2.0
RETIRE_GRACE_SEC = 10.0
"""An idle worker exits this long after the pool stopped handing it out (no race on a job)."""
PING = "os:getpid"
"""What :meth:`WorkerPool.warm` sends an idle worker to restart its idle clock."""
DEATH_WINDOW_SEC = 300.0  # deaths counted for health over this window
DEATHS_DEGRADED = 3  # this many deaths in the window make the pool degraded

OnWait = Callable[[], None]


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# --------------------------------------------------------------------------- in the worker


def die_with_parent(parent_pid: int) -> None:
    """This process gets SIGKILL when its parent dies (Linux ``PR_SET_PDEATHSIG``).

    A worker's parent is the forkserver, which exits when the daemon does: so a daemon killed
    with SIGKILL takes its workers with it, and no orphan finishes a job whose result the
    restarted daemon would then redo (or replace in place). ``parent_pid`` is the parent seen
    before the request: if it already died, the request came too late and we exit at once.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def _resolve(reference: str) -> Callable[..., Any]:
    module_name, _, qualname = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{reference} is not callable")
    return target  # type: ignore[no-any-return]


def _answer(request: dict[str, Any]) -> bytes:
    try:
        result = _resolve(request["func"])(*request["args"], **request["kwargs"])
        reply: dict[str, Any] = {"ok": True, "result": result}
    except Exception as exc:
        reply = {
            "ok": False,
            "error": type(exc).__name__,
            "message": str(exc),
            "ours": isinstance(exc, DSA110Error),
        }
    try:
        return json.dumps(reply).encode()
    except (TypeError, ValueError) as exc:
        bad = {"ok": False, "error": "TypeError", "message": f"result is not JSON: {exc}"}
        return json.dumps(bad).encode()


def worker_main(
    conn: Connection,
    modules: Sequence[str],
    sys_path: Sequence[str],
    retire_after_sec: float | None = None,
) -> None:
    """A worker's life: import the heavy modules once, then answer requests until EOF (or,
    with ``retire_after_sec``, until none came for that long: exit status 0)."""
    die_with_parent(os.getppid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.path[:] = list(sys_path)
    for module in modules:
        importlib.import_module(module)
    while True:
        try:
            if retire_after_sec is not None and not conn.poll(retire_after_sec):
                return  # retired: the pool no longer hands this worker out
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        conn.send_bytes(_answer(json.loads(raw)))


# --------------------------------------------------------------------------- in the daemon


def reference(func: Callable[..., Any]) -> str:
    """``module:qualname`` of a module-level function, refusing lambdas and closures."""
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or "<" in qualname:
        raise TypeError(f"{func!r}: worker jobs must be module-level functions")
    return f"{module}:{qualname}"


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(
        self, process: multiprocessing.process.BaseProcess, conn: Connection, keeper: bool = False
    ) -> None:
        self.process = process
        self.conn = conn
        self.keeper = keeper
        """One of the pool's ``keep`` workers: never retires."""
        self.idle_since = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def describe_death(self) -> str:
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        if code is None:
            return "its pipe closed"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    async def call(self, request: bytes, on_wait: OnWait | None, beat_sec: float) -> Any:
        try:
            self.conn.send_bytes(request)
        except OSError as exc:
            raise WorkerDiedError(f"worker {self.pid}: cannot send the job ({exc})") from None
        while not self.conn.poll():
            with anyio.move_on_after(beat_sec):
                await anyio.wait_readable(self.conn.fileno())
            if on_wait is not None:
                on_wait()
        try:
            return json.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            raise WorkerDiedError(f"worker process {self.pid} {self.describe_death()}") from None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(self.pid, signal.SIGKILL)
        self.conn.close()
        self.process.join(timeout=CLOSE_TIMEOUT_SEC)


class WorkerPool:
    """At most ``size`` jobs at once, each in its own worker process (see the module docstring).

    Use as ``async with WorkerPool(size, modules) as pool:``; ``size`` 0 means one per core.
    """

    def __init__(
        self,
        size: int = 0,
        modules: Sequence[str] = (),
        beat_sec: float = 1.0,
        idle_sec: float | None = None,
        keep: int = 0,
    ) -> None:
        self.size = size or os.cpu_count() or 1
        self.keep = min(keep, self.size) if idle_sec is not None else 0
        """With idle_sec: this many workers start with the pool and never retire (a warm
        worker for latency), the others come for a backlog and go when it is done."""
        self.modules = tuple(modules)
        self.beat_sec = beat_sec
        self.idle_sec = idle_sec
        """None: every worker starts with the pool and lives as long; else see the module doc."""
        self.retire_grace_sec = RETIRE_GRACE_SEC
        self.retired = 0
        self._context = multiprocessing.get_context(START_METHOD)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._slots = anyio.Semaphore(self.size)
        self._deaths: deque[float] = deque(maxlen=100)
        self.jobs_done = 0

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()

    async def start(self) -> None:
        """Start every worker now, so their imports happen before the first job (a pool that
        shrinks when idle starts none: :meth:`warm` or the first job does)."""
        wanted = self.size if self.idle_sec is None else self.keep
        for _ in range(wanted - len(self._idle)):
            self._idle.append(await anyio.to_thread.run_sync(self._spawn, True))

    async def warm(self) -> None:
        """Work is coming: spawn the missing workers (their imports start now, not with the
        first job) and restart the idle clock of those idle for over half of ``idle_sec``.
        Cheap when the pool is warm; a no-op for a pool without ``idle_sec`` or modules."""
        if self.idle_sec is None or not self.modules:
            return
        now = time.monotonic()
        for worker in list(self._idle):
            if now - worker.idle_since > self.idle_sec / 2 and worker in self._idle:
                self._idle.remove(worker)
                await self._ping(worker)
        while len(self._idle) + len(self._busy) < self.size:
            self._idle.append(await anyio.to_thread.run_sync(self._spawn))

    async def _ping(self, worker: _Worker) -> None:
        """One round trip that keeps an idle worker alive (it goes back to idle, or is
        dropped if it died or retired meanwhile)."""
        if self._expired(worker, time.monotonic()) or not worker.process.is_alive():
            self._discard(worker)
            return
        self._busy.add(worker)
        try:
            request = json.dumps({"func": PING, "args": [], "kwargs": {}}).encode()
            await worker.call(request, None, self.beat_sec)
        except WorkerDiedError:
            self._discard(worker)
        except BaseException:
            worker.kill()
            raise
        else:
            worker.idle_since = time.monotonic()
            self._idle.append(worker)
        finally:
            self._busy.discard(worker)

    def _retire_after(self, keeper: bool) -> float | None:
        if self.idle_sec is None or keeper:
            return None
        return self.idle_sec + self.retire_grace_sec

    def _expired(self, worker: _Worker, now: float) -> bool:
        return (
            self.idle_sec is not None
            and not worker.keeper
            and now - worker.idle_since > self.idle_sec
        )

    def _discard(self, worker: _Worker) -> None:
        """Drop a worker found dead or past its idle time: a death only if it did not exit
        on its own with status 0 (retired)."""
        alive = worker.process.is_alive()
        if not alive and worker.process.exitcode not in (0, None):
            self._deaths.append(time.monotonic())
        else:
            self.retired += 1
        if alive:
            worker.conn.close()  # EOF: it exits (it is idle)
        else:
            worker.kill()

    def _spawn(self, keeper: bool = False) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(  # type: ignore[attr-defined]
            target=worker_main,
            args=(child_end, self.modules, list(sys.path), self._retire_after(keeper)),
            name="dsa110d-worker",
            daemon=True,
        )
        process.start()
        child_end.close()  # so the parent sees EOF when the worker dies
        return _Worker(process, parent_end, keeper)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers, idle and busy."""
        return [w.pid for w in (*self._idle, *self._busy)]

    def recent_deaths(self, window_sec: float = DEATH_WINDOW_SEC) -> int:
        cutoff = time.monotonic() - window_sec
        return sum(1 for t in self._deaths if t >= cutoff)

    async def run(
        self, func: Callable[..., Any], *args: Any, on_wait: OnWait | None = None, **kwargs: Any
    ) -> Any:
        """Run ``func(*args, **kwargs)`` in a worker and return its (JSON) result.

        Raises WorkerDiedError when the worker dies during the job (retry it: the next job
        gets a fresh worker), the job's own DSA110Error when it raised one, else WorkerJobError.
        Cancelling the caller kills the worker: the job is abandoned, not left running.
        """
        request = json.dumps(
            {"func": reference(func), "args": list(args), "kwargs": kwargs}
        ).encode()
        await self._acquire_slot(on_wait)
        try:
            worker = await self._take_worker()
            self._busy.add(worker)
            try:
                reply = await worker.call(request, on_wait, self.beat_sec)
            except WorkerDiedError:
                self._deaths.append(time.monotonic())
                worker.kill()
                replacement = await anyio.to_thread.run_sync(self._spawn, worker.keeper)
                self._idle.append(replacement)
                raise
            except BaseException:
                worker.kill()  # cancelled mid-job: abandon it, never leave it running
                raise
            else:
                worker.idle_since = time.monotonic()
                self._idle.append(worker)
            finally:
                self._busy.discard(worker)
        finally:
            self._slots.release()
        self.jobs_done += 1
        return _unwrap(reference(func), reply)

    async def _acquire_slot(self, on_wait: OnWait | None) -> None:
        """Wait for a free worker, calling ``on_wait`` every ``beat_sec`` meanwhile: a
        service queued behind busy workers is waiting, not stuck, and must keep beating."""
        while True:
            with anyio.move_on_after(self.beat_sec):
                await self._slots.acquire()
                return
            if on_wait is not None:
                on_wait()

    async def _take_worker(self) -> _Worker:
        """An idle live worker, else a fresh one (replacing any that died while idle, and
        retiring any idle for longer than ``idle_sec``)."""
        now = time.monotonic()
        while self._idle:
            worker = self._idle.pop()
            if worker.process.is_alive() and not self._expired(worker, now):
                return worker
            self._discard(worker)
        keepers = sum(w.keeper for w in (*self._idle, *self._busy))
        return await anyio.to_thread.run_sync(self._spawn, keepers < self.keep)

    async def close(self) -> None:
        """Stop the idle workers (EOF on their pipes) and kill any still busy."""
        idle, self._idle = self._idle, []
        for worker in idle:
            worker.conn.close()
        for worker in idle:
            await anyio.to_thread.run_sync(worker.process.join, CLOSE_TIMEOUT_SEC)
            if worker.process.is_alive():
                worker.kill()
        for worker in list(self._busy):
            worker.kill()


def _unwrap(ref: str, reply: dict[str, Any]) -> Any:
    if reply.get("ok"):
        return reply.get("result")
    name, message = str(reply.get("error")), str(reply.get("message"))
    if reply.get("ours"):
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, DSA110Error):
            raise cls(message)
    raise WorkerJobError(f"{ref} failed in a worker: {name}: {message}")
