"""The message envelope: round trip, and one-line refusals of bad entries."""

from __future__ import annotations

import json

import pytest

from dsa110d.errors import MessageError
from dsa110d.messages import (
    SCHEMA_VERSION,
    Message,
    MessageType,
    Producer,
    decode,
    encode,
    new_message,
)

LIMIT = 65536
PRODUCER = Producer("corr01", 4242, "hdf5_watcher")


def sample() -> Message:
    return new_message(
        MessageType.HDF5_PROCESSING, {"set": "2025-01-01T00:00:00", "files": 16}, PRODUCER
    )


def document() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(encode(sample()))
    return loaded


def test_round_trip_keeps_every_field() -> None:
    message = sample()
    assert decode(encode(message), LIMIT) == message
    assert message.schema_version == SCHEMA_VERSION
    assert message.trace_id == message.id


def test_trace_id_is_carried_to_follow_up_messages() -> None:
    first = sample()
    follow = new_message(MessageType.MS_PROCESSING, {}, PRODUCER, trace_id=first.trace_id)
    assert follow.trace_id == first.trace_id and follow.id != first.id


def test_every_type_round_trips() -> None:
    for kind in MessageType:
        message = new_message(kind, {}, PRODUCER)
        assert decode(encode(message), LIMIT).type is kind


def test_encode_is_json_without_pickle_or_nan() -> None:
    with pytest.raises(MessageError, match="not JSON-serialisable"):
        encode(new_message(MessageType.SYSTEM, {"x": float("nan")}, PRODUCER))
    with pytest.raises(MessageError, match="not JSON-serialisable"):
        encode(new_message(MessageType.SYSTEM, {"x": object()}, PRODUCER))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("type"), "missing field 'type'"),
        (lambda d: d.pop("payload"), "missing field 'payload'"),
        (lambda d: d.pop("trace_id"), "missing field 'trace_id'"),
        (lambda d: d["producer"].pop("pid"), "missing field 'producer.pid'"),
        (lambda d: d.update(type="PIZZA"), "unknown type 'PIZZA'"),
        (lambda d: d.update(schema_version=2), "unsupported schema_version 2"),
        (lambda d: d.update(schema_version="1"), "schema_version must be an integer"),
        (lambda d: d.update(payload=[1, 2]), "payload must be a JSON object"),
        (lambda d: d.update(created_at="noon"), "created_at must be a number"),
        (lambda d: d.update(id=""), "id must be a non-empty string"),
    ],
)
def test_bad_envelopes_are_refused_with_one_line(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    doc = document()
    mutate(doc)
    with pytest.raises(MessageError, match=reason) as caught:
        decode(json.dumps(doc), LIMIT)
    assert "\n" not in str(caught.value)


def test_bad_json_and_non_objects_are_refused() -> None:
    with pytest.raises(MessageError, match="bad JSON"):
        decode("{not json", LIMIT)
    with pytest.raises(MessageError, match="expected a JSON object"):
        decode("[1, 2]", LIMIT)
    with pytest.raises(MessageError, match="not valid UTF-8"):
        decode(b"\xff\xfe", LIMIT)


def test_oversize_entries_are_refused_before_parsing() -> None:
    raw = encode(new_message(MessageType.SYSTEM, {"x": "y" * 100}, PRODUCER))
    assert decode(raw, len(raw)).payload == {"x": "y" * 100}
    with pytest.raises(MessageError, match=f"{len(raw)} bytes is over the size limit of 100"):
        decode(raw, 100)
