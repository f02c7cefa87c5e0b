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
line saying what is wrong (bad JSON, unknown type, missing field, unsupported version,
over-size). Consumers move such entries to the dead letters with that line as the reason.
No pickle anywhere: JSON only.
"""

from __future__ import annotations

import enum
import json
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
    try:
        return json.dumps(document, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MessageError(
            f"message {message.id}: payload is not JSON-serialisable: {exc}"
        ) from None


def decode(raw: str | bytes, max_bytes: int) -> Message:
    """Parse and validate one envelope; every fault is one MessageError line."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise MessageError(f"entry of {size} bytes is over the size limit of {max_bytes} bytes")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"bad JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MessageError(f"bad envelope: expected a JSON object, got {type(document).__name__}")
    return _from_document(document)


def _from_document(document: dict[str, Any]) -> Message:
    missing = [name for name in REQUIRED_FIELDS if name not in document]
    ident = document.get("id", "?")
    if missing:
        raise MessageError(f"message {ident}: missing field {missing[0]!r}")
    version = document["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise MessageError(f"message {ident}: schema_version must be an integer, got {version!r}")
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_VERSIONS))
        raise MessageError(
            f"message {ident}: unsupported schema_version {version} (supported: {supported})"
        )
    try:
        message_type = MessageType(document["type"])
    except ValueError:
        raise MessageError(f"message {ident}: unknown type {document['type']!r}") from None
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
    if not isinstance(value, str) or not value:
        raise MessageError(f"message {ident}: {name} must be a non-empty string, got {value!r}")
    return value


def _number(document: dict[str, Any], name: str, ident: str) -> float:
    value = document[name]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise MessageError(f"message {ident}: {name} must be a number, got {value!r}")
    return float(value)


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
        raise MessageError(f"message {ident}: producer.pid must be an integer, got {pid!r}")
    return Producer(str(document["host"]), pid, str(document["service"]))
