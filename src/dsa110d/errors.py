"""The one exception hierarchy of dsa110d.

Every error a user can cause carries a message that is one readable line naming the file,
key or message at fault. Builtin mix-ins let callers catch by kind (``ValueError``, ``OSError``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

# A reason recorded against a unit of work (dead letter, file fault, log line) is one line
# of at most this many characters: enough to name the fault and the few paths it concerns
# (a refused path, where it resolves to, the data roots), never a flood from hostile input.
REASON_MAX_CHARS = 600
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


class DSA110Error(Exception):
    """Root of every dsa110d error."""


class ConfigError(DSA110Error, ValueError):
    """The configuration is invalid: names the key path (or file and line) and the fault."""


class StateError(DSA110Error):
    """Something went wrong talking to the state server (Redis or Valkey)."""


class ServerUnavailableError(StateError, ConnectionError):
    """The state server cannot be reached; the message says where and what to check."""


class ReplicationError(StateError):
    """A write was not confirmed by the configured number of replicas within the timeout."""


class EmbeddedServerError(StateError):
    """The embedded Valkey server could not be started or attached."""


class MessageError(DSA110Error, ValueError):
    """A stream entry is not a valid message envelope (bad JSON, unknown type, too big...)."""


class LeaseLostError(StateError):
    """A lease expired or was taken over; the holder must stop and must not commit."""


class FencingError(LeaseLostError):
    """A commit carried a fencing token older than the current holder's."""


class CircuitOpenError(DSA110Error):
    """A call was refused because its circuit breaker is open."""


class InputFileError(DSA110Error, ValueError):
    """An input file (HDF5 subband, catalog) is unreadable or malformed; names the file."""


class ConversionError(DSA110Error):
    """A subband set could not be converted into a Measurement Set."""


class PathOutsideRootsError(DSA110Error, PermissionError):
    """A path from a message resolves outside the configured data roots."""


class StageError(DSA110Error):
    """A processing stage failed on a block."""


class LeaseHeldError(StateError):
    """A lease could not be acquired because another holder has it; names the holder."""


class WorkerDiedError(DSA110Error):
    """A worker process died (out of memory, segfault, SIGKILL) while running one job."""


class WorkerJobError(DSA110Error):
    """A job raised inside a worker process; the message names the job and the error."""


class NotFoundError(DSA110Error, LookupError):
    """What a query names does not exist (a source without photometry, a result file)."""


class BadRequestError(DSA110Error, ValueError):
    """A query that names something malformed (a path outside the results, a bad id)."""


class VariabilityInputError(DSA110Error, ValueError):
    """Photometry rows or saved variability state are malformed; names the file and the fault."""


class VOEventError(DSA110Error, ValueError):
    """A VOEvent packet lacks structure VOEvent 2.0 requires, or cannot be read; names it."""


@contextmanager
def sole_error() -> Iterator[None]:
    """Around a task group: its failure is raised as itself, not inside an ExceptionGroup.

    Callers catch by kind (``except StateError`` waits out an outage); a group would slip past
    them and crash the service. When every task failed with an error of ours (an outage fails
    them all alike) the first is raised; a group holding anything else is raised as it is.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1 or all(isinstance(e, DSA110Error) for e in leaves):
            raise leaves[0] from None
        raise


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def describe(exc: BaseException, limit: int = REASON_MAX_CHARS) -> str:
    """One printable line naming an exception: ``Type: message``, control characters removed.

    The one way a fault is recorded against a unit of work (a dead letter's reason, a file
    fault, a ``control_rejected`` line): hostile input may put newlines, terminal escapes or
    megabytes into an exception's text; none of it reaches a log, a table or the state.
    """
    text = str(exc)
    if isinstance(exc, DSA110Error) or not text:
        line = text or type(exc).__name__
    else:
        line = f"{type(exc).__name__}: {text}"
    line = _CONTROL_CHARS.sub(" ", line).strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


def is_service_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of the service itself rather than of the unit it worked on.

    The classification every fault boundary uses (DESIGN.md section 5). A boundary around one
    unit of work (a file, a stream entry, a control message, an alert delivery, an open set)
    catches ``Exception``; it re-raises a service fault, which the service waits out or counts
    toward its restart intensity, and records anything else against the unit and goes on.
    Service faults: the state server unreachable or misbehaving (:class:`StateError`, except a
    lost or held lease, which concerns one unit), and anything that is not an ``Exception``
    (cancellation, ``KeyboardInterrupt``, ``SystemExit``). A ``MemoryError`` or
    ``RecursionError`` raised while parsing one input is that input's fault.
    """
    if not isinstance(exc, Exception):
        return True
    if isinstance(exc, LeaseLostError | LeaseHeldError):
        return False
    # redis-py errors are translated in state.connection; one that slipped past is still the
    # server's fault, not the input's.
    return isinstance(exc, StateError) or type(exc).__module__.startswith("redis.")
