"""Hypothesis strategies for the fault-boundary fuzz tests: what a hostile or broken writer
can put in a stream entry or a control message, and in the configuration.

Each strategy yields bytes as they would arrive from the server. They mix plain noise with
near misses (a valid envelope with one field replaced, spliced with bytes that are not
UTF-8, nested past the depth limit, grown past the size limit), since noise alone rarely gets
past the first check of a decoder.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from dsa110d.messages import (
    MAX_NESTING_DEPTH,
    MessageType,
    Producer,
    encode,
    new_message,
)

PRODUCER = Producer("fuzz-host", 7, "fuzz")
FIXED_TIME = 1_764_160_000.125
FIXED_ID = "f" * 32
ENTRY_LIMIT = 65536  # the shipped streams.max_entry_bytes
SCALE = float(os.environ.get("DSA110_FUZZ_SCALE", "1"))
"""Multiplies every example count (CI runs 1; a long local hunt may run 20)."""


def fuzz_settings(examples: int) -> settings:
    """Settings of one fuzz test: ``examples`` (scaled), no deadline (a loaded CI machine
    is slow), derandomised so that CI is reproducible and a failure replays."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
FIELDS = ("id", "type", "schema_version", "created_at", "producer", "payload", "trace_id")


def envelope(message_type: MessageType = MessageType.HDF5_PROCESSING, **payload: Any) -> bytes:
    """A valid envelope's bytes, the same for the same arguments (a strategy that draws from
    its length must draw alike on a replay)."""
    message = new_message(message_type, dict(payload), PRODUCER, now=FIXED_TIME)
    return encode(replace(message, id=FIXED_ID, trace_id=FIXED_ID)).encode()


@st.composite
def mutated_envelopes(draw: st.DrawFn, message_type: MessageType) -> bytes:
    """A valid envelope with fields dropped or replaced by arbitrary JSON values."""
    document = json.loads(envelope(message_type, n=draw(st.integers())))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            document.pop(name, None)
        else:
            document[name] = draw(json_values)
    if draw(st.booleans()):
        document["payload"] = draw(json_values)
    return json.dumps(document).encode()


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """An envelope whose payload nests arrays or objects around the depth limit, or far past
    it (deep enough that a recursive parser runs out of stack)."""
    depth = draw(
        st.integers(MAX_NESTING_DEPTH - 3, MAX_NESTING_DEPTH + 3) | st.integers(900, 30_000)
    )
    opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    body = opening * depth + "0" + closing * depth
    text = json.dumps(json.loads(envelope()) | {"payload": "HERE"}).replace('"HERE"', body)
    return text.encode()


@st.composite
def not_utf8(draw: st.DrawFn, message_type: MessageType) -> bytes:
    """A valid envelope with bytes that are not UTF-8 spliced in somewhere."""
    raw = envelope(message_type, n=1)
    at = draw(st.integers(0, len(raw)))
    junk = draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]))
    return raw[:at] + junk + raw[at:]


@st.composite
def oversize(draw: st.DrawFn, limit: int = ENTRY_LIMIT) -> bytes:
    """A valid envelope of about ``limit`` bytes: just under, at, or over it."""
    base = len(envelope(pad=""))
    size = draw(st.integers(limit - 2, limit + 2) | st.integers(limit, 4 * limit))
    return envelope(pad="x" * max(0, size - base))


def raw_entries(
    message_type: MessageType = MessageType.HDF5_PROCESSING,
) -> st.SearchStrategy[bytes]:
    """Anything a writer may XADD as an entry's ``m`` field (or PUBLISH on the channel)."""
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        json_values.map(lambda v: json.dumps(v).encode()),
        mutated_envelopes(message_type),
        nested(),
        not_utf8(message_type),
        oversize(),
    )


CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def one_line(text: str, limit: int = 1000) -> bool:
    """A recorded reason: one line of bounded length with no control character (no newline,
    no terminal escape)."""
    return not CONTROL_CHARS.search(text) and 0 < len(text) <= limit
