"""The one exception hierarchy of dsa110d.

Every error a user can cause carries a message that is one readable line naming the file,
key or message at fault. Builtin mix-ins let callers catch by kind (``ValueError``, ``OSError``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class DSA110Error(Exception):
    """Root of every dsa110d error."""


class ConfigError(DSA110Error, ValueError):
    """The configuration is invalid: names the key path (or file and line) and the fault."""


class StateError(DSA110Error):
    """Something went wrong talking to the state server (Redis or Valkey)."""


class ServerUnavailableError(StateError, ConnectionError):
    """The state server cannot be reached; the message says where and what to check."""


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


class VariabilityInputError(DSA110Error, ValueError):
    """Photometry rows or saved variability state are malformed; names the file and the fault."""


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
