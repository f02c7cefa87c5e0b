"""Fuzz of the envelope decoder: whatever bytes arrive, decode returns a message or raises one
MessageError line, never anything else; and every encodable message round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsa110d.errors import MessageError
from dsa110d.messages import (
    MAX_NESTING_DEPTH,
    Message,
    MessageType,
    decode,
    encode,
    nesting_depth,
    new_message,
)
from tests.fuzzkit import ENTRY_LIMIT, PRODUCER, fuzz_settings, json_values, one_line, raw_entries


def _outcome(raw: bytes | str) -> Message | MessageError:
    try:
        return decode(raw, ENTRY_LIMIT)
    except MessageError as exc:
        return exc


@fuzz_settings(3000)
@given(raw=raw_entries())
def test_any_bytes_decode_to_a_message_or_one_message_error_line(raw: bytes) -> None:
    outcome = _outcome(raw)
    if isinstance(outcome, MessageError):
        assert one_line(str(outcome)), str(outcome)
    else:
        assert len(raw) <= ENTRY_LIMIT
        assert nesting_depth({"payload": outcome.payload}) <= MAX_NESTING_DEPTH
        assert outcome.id.isprintable() and outcome.trace_id.isprintable()


@fuzz_settings(1000)
@given(text=st.text(max_size=300))
def test_any_text_decodes_to_a_message_or_one_message_error_line(text: str) -> None:
    outcome = _outcome(text)  # str input too: lone surrogates cannot be encoded
    if isinstance(outcome, MessageError):
        assert one_line(str(outcome))


@fuzz_settings(500)
@given(payload=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_every_encodable_message_round_trips(payload: dict[str, object]) -> None:
    message = new_message(MessageType.MS_PROCESSING, payload, PRODUCER)
    try:
        raw = encode(message)
    except MessageError as exc:  # only what JSON cannot carry, nested too deep
        assert one_line(str(exc))
        return
    assert decode(raw, 16 * ENTRY_LIMIT) == message


def test_the_depth_limit_counts_the_envelope_and_the_payload_as_levels() -> None:
    arrays = MAX_NESTING_DEPTH - 2  # the envelope is level 1, the payload level 2
    inner: object = 0
    for _ in range(arrays):
        inner = [inner]
    raw = encode(new_message(MessageType.SYSTEM, {"x": inner}, PRODUCER))
    assert decode(raw, ENTRY_LIMIT).payload == {"x": inner}
    with pytest.raises(MessageError, match=f"nests deeper than {MAX_NESTING_DEPTH} levels"):
        encode(new_message(MessageType.SYSTEM, {"x": [inner]}, PRODUCER))
    with pytest.raises(MessageError, match=f"nests deeper than {MAX_NESTING_DEPTH} levels"):
        decode(raw.replace('"x":', '"x":[', 1).replace("]}", "]]}", 1), ENTRY_LIMIT)
