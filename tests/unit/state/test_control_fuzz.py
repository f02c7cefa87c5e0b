"""Fuzz of the control channel's fault boundary: whatever is PUBLISHed on the channel, the
listener hands the handler a command or one MessageError line per message, and goes on
listening (the next valid command still arrives)."""

from __future__ import annotations

import anyio
import pytest
from fakeredis import FakeAsyncRedis
from hypothesis import given
from hypothesis import strategies as st

from dsa110d.errors import MessageError
from dsa110d.messages import MessageType
from dsa110d.state.control import ControlChannel, ControlCommand
from dsa110d.state.keys import Keys
from tests.fuzzkit import fuzz_settings, one_line, raw_entries

CONTROL_ENTRIES = raw_entries(MessageType.SYSTEM)


def _outcome(raw: bytes) -> ControlCommand | MessageError:
    try:
        return ControlCommand.from_json(raw)
    except MessageError as exc:
        return exc


@fuzz_settings(3000)
@given(raw=CONTROL_ENTRIES)
def test_any_control_message_decodes_to_a_command_or_one_message_error_line(raw: bytes) -> None:
    outcome = _outcome(raw)
    if isinstance(outcome, MessageError):
        assert one_line(str(outcome)), str(outcome)
    else:
        assert outcome.action in ("restart", "pause", "resume", "status")
        assert outcome.pid is None or type(outcome.pid) is int


@pytest.mark.anyio
@fuzz_settings(300)
@given(messages=st.lists(CONTROL_ENTRIES, min_size=1, max_size=4))
async def test_the_listener_survives_any_message_and_hands_over_the_next_command(
    messages: list[bytes],
) -> None:
    redis = FakeAsyncRedis(decode_responses=True)  # as in production: a decoding client
    keys = Keys("fuzz")
    channel = ControlChannel(redis, keys)
    received: list[ControlCommand | MessageError] = []
    last = ControlCommand("status", host="fuzz-host")

    async def handle(command: ControlCommand | MessageError) -> None:
        received.append(command)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(channel.serve, handle)
            while not (await redis.pubsub_numsub(keys.control()))[0][1]:
                await anyio.sleep(0.001)
            for raw in messages:
                await redis.publish(keys.control(), raw)
            await redis.publish(keys.control(), last.to_json())
            while len(received) < len(messages) + 1:
                await anyio.sleep(0.001)
            tg.cancel_scope.cancel()
    assert received[-1] == last
    for raw, got in zip(messages, received[:-1], strict=True):
        if isinstance(got, MessageError):
            assert one_line(str(got)), str(got)
        else:
            assert got == _outcome(raw)
