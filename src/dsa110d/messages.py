"""The versioned JSON message envelope: the only place that encodes or decodes a message.

Every message between services is one JSON object::

    {"id": "9f0c...", "type": "HDF5_PROCESSING", "schema_version": 1,
     "created_at": 1764160000.123, "trace_id": "4be1...",
     "producer": {"host": "corr01", "pid": 4242, "service": "hdf5_watcher"},
     "payload": {...}}

* ``id`` is unique per message (a uuid4 hex) and is what idempotent effects are keyed by.
* ``type`` is one of :class:`MessageType`; the stream a message travels on is named after it.
* ``schema_version`` is the envelope version. A reader accepts only the versions in
  :data:`SUPPORTED_VERSIONS`; anything else is refused rather than guessed at.
* ``created_at`` is the producer's wall clock (Unix seconds), for latency and age.
* ``trace_id`` follows one logical event (one subband set) through every stage.
* ``payload`` is a JSON object owned by the message type; the envelope does not inspect it.

:func:`decode` validates on read and raises :class:`~dsa110d.errors.MessageError` with one
line saying what is wrong (over-size, not UTF-8, bad JSON, nested too deep, unknown type,
missing field, unsupported version). Consumers move such entries to the dead letters with that
line as the reason. It takes the entry's bytes as they came from the server: an entry is
untrusted input (anyone who may write to the stream or publish on the control channel), so
nothing about it is assumed before this function has checked it, and nothing it contains can
make :func:`decode` raise anything but a MessageError. No pickle anywhere: JSON only.

Bounds, so that one entry costs a bounded amount of memory and stack whatever it holds:
the size (the caller's limit, never above :data:`MAX_MESSAGE_BYTES`), the nesting depth of
the envelope (:data:`MAX_NESTING_DEPTH`) and the length of its identifiers
(:data:`MAX_ID_CHARS`). Strings quoted in an error are cut to :data:`SHOW_CHARS`.
"""

from __future__ import annotations

import enum
import json
import math
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from dsa110d.errors import MessageError

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
REQUIRED_FIELDS = ("id", "type", "schema_version", "created_at", "producer", "payload", "trace_id")
PRODUCER_FIELDS = ("host", "pid", "service")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Hard ceiling on one encoded message, whatever ``streams.max_entry_bytes`` says."""
MAX_NESTING_DEPTH = 32
"""Objects and arrays nested in one envelope, the envelope itself counting as 1 and its payload
as 2. Real payloads nest 3 or 4 deep; JSON nested thousands deep would exhaust the parser's
stack (RecursionError) and every later consumer of the message."""
MAX_ID_CHARS = 128
"""An id or trace id is a uuid hex (32 characters); this leaves room without letting one be
a megabyte that every log line about the message repeats."""
SHOW_CHARS = 80  # of a faulty value quoted in a MessageError


class MessageType(enum.StrEnum):
    """The kinds of work that flow between services (DESIGN section 4)."""

    HDF5_PROCESSING = "HDF5_PROCESSING"
    MS_PROCESSING = "MS_PROCESSING"
    VARIABILITY_ANALYSIS = "VARIABILITY_ANALYSIS"
    SYSTEM = "SYSTEM"


@dataclass(frozen=True)
class Producer:
    """Who sent a message."""

    host: str
    pid: int
    service: str

    @classmethod
    def here(cls, service: str) -> Producer:
        """This process, on this host, as ``service``."""
        return cls(socket.gethostname(), os.getpid(), service)


@dataclass(frozen=True)
class Message:
    """One envelope; build new ones with :func:`new_message`."""

    id: str
    type: MessageType
    schema_version: int
    created_at: float
    producer: Producer
    payload: dict[str, Any]
    trace_id: str = field(default="")


def new_message(
    message_type: MessageType,
    payload: dict[str, Any],
    producer: Producer,
    trace_id: str | None = None,
    now: float | None = None,
) -> Message:
    """A fresh message with a new id; the trace id defaults to the id (start of a trace)."""
    message_id = uuid.uuid4().hex
    return Message(
        id=message_id,
        type=message_type,
        schema_version=SCHEMA_VERSION,
        created_at=time.time() if now is None else now,
        producer=producer,
        payload=payload,
        trace_id=trace_id or message_id,
    )


def encode(message: Message) -> str:
    """The envelope as compact JSON; a payload that JSON cannot carry is a MessageError."""
    document = {
        "id": message.id,
        "type": message.type.value,
        "schema_version": message.schema_version,
        "created_at": message.created_at,
        "producer": {
            "host": message.producer.host,
            "pid": message.producer.pid,
            "service": message.producer.service,
        },
        "payload": message.payload,
        "trace_id": message.trace_id,
    }
    if nesting_depth(document) > MAX_NESTING_DEPTH:
        raise MessageError(
            f"message {message.id}: payload nests deeper than {MAX_NESTING_DEPTH} levels"
        )
    try:
        return json.dumps(document, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MessageError(
            f"message {message.id}: payload is not JSON-serialisable: {exc}"
        ) from None


def decode(raw: str | bytes, max_bytes: int) -> Message:
    """Parse and validate one envelope; every fault is one MessageError line.

    ``raw`` is best given as the bytes read from the server: they are checked for size,
    then decoded as strict UTF-8, then parsed, so that no fault of the input escapes as
    anything but a MessageError.
    """
    limit = min(max_bytes, MAX_MESSAGE_BYTES)
    if isinstance(raw, str):
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MessageError(f"entry is not valid UTF-8: {exc.reason}") from None
    else:
        data = bytes(raw)
    if len(data) > limit:
        raise MessageError(f"entry of {len(data)} bytes is over the size limit of {limit} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError(f"entry is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        document = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise MessageError(f"bad envelope: nests deeper than {MAX_NESTING_DEPTH} levels") from None
    except ValueError as exc:
        raise MessageError(f"bad JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MessageError(f"bad envelope: expected a JSON object, got {type(document).__name__}")
    if nesting_depth(document) > MAX_NESTING_DEPTH:
        raise MessageError(f"bad envelope: nests deeper than {MAX_NESTING_DEPTH} levels")
    return _from_document(document)


def nesting_depth(value: Any) -> int:
    """How deep objects and arrays nest in ``value`` (a scalar is 0); stops counting past
    :data:`MAX_NESTING_DEPTH`. Iterative: hostile nesting must not exhaust the stack here."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_NESTING_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _no_constant(name: str) -> Any:
    # json accepts NaN and Infinity by default; a strict JSON writer never emits them
    raise ValueError(f"{name} is not JSON")


def _show(value: Any) -> str:
    """A value quoted in an error: its repr, cut short (hostile input may be huge)."""
    text = repr(value)
    return text if len(text) <= SHOW_CHARS else text[: SHOW_CHARS - 3] + "..."


def _from_document(document: dict[str, Any]) -> Message:
    missing = [name for name in REQUIRED_FIELDS if name not in document]
    ident = document.get("id", "?")
    ident = ident if isinstance(ident, str) and ident.isprintable() else _show(ident)
    ident = ident if len(ident) <= SHOW_CHARS else ident[: SHOW_CHARS - 3] + "..."
    if missing:
        raise MessageError(f"message {ident}: missing field {missing[0]!r}")
    version = document["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise MessageError(
            f"message {ident}: schema_version must be an integer, got {_show(version)}"
        )
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_VERSIONS))
        raise MessageError(
            f"message {ident}: unsupported schema_version {version} (supported: {supported})"
        )
    try:
        message_type = MessageType(document["type"])
    except ValueError:
        raise MessageError(f"message {ident}: unknown type {_show(document['type'])}") from None
    return Message(
        id=_string(document, "id", ident),
        type=message_type,
        schema_version=version,
        created_at=_number(document, "created_at", ident),
        producer=_producer(document["producer"], ident),
        payload=_object(document["payload"], "payload", ident),
        trace_id=_string(document, "trace_id", ident),
    )


def _string(document: dict[str, Any], name: str, ident: str) -> str:
    value = document[name]
    # printable: an id goes into log lines and tables verbatim
    if not isinstance(value, str) or not value or not value.isprintable():
        raise MessageError(
            f"message {ident}: {name} must be a non-empty string of printable characters, "
            f"got {_show(value)}"
        )
    if len(value) > MAX_ID_CHARS:
        raise MessageError(f"message {ident}: {name} is longer than {MAX_ID_CHARS} characters")
    return value


def _number(document: dict[str, Any], name: str, ident: str) -> float:
    value = document[name]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise MessageError(f"message {ident}: {name} must be a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        number = math.inf
    if not math.isfinite(number):
        raise MessageError(f"message {ident}: {name} must be a finite number")
    return number


def _object(value: Any, name: str, ident: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MessageError(f"message {ident}: {name} must be a JSON object")
    return value


def _producer(value: Any, ident: str) -> Producer:
    document = _object(value, "producer", ident)
    missing = [name for name in PRODUCER_FIELDS if name not in document]
    if missing:
        raise MessageError(f"message {ident}: missing field 'producer.{missing[0]}'")
    pid = document["pid"]
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise MessageError(f"message {ident}: producer.pid must be an integer, got {_show(pid)}")
    return Producer(str(document["host"]), pid, str(document["service"]))
