"""``sole_error``: a task group's failure reaches ``except <kind>`` as itself."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from dsa110d.errors import ServerUnavailableError, StateError, sole_error


async def _fail(error: BaseException) -> None:
    raise error


async def _group_of(*errors: BaseException) -> None:
    with sole_error():
        async with anyio.create_task_group() as tg:
            for error in errors:
                tg.start_soon(_fail, error)


def test_one_failure_comes_out_as_itself() -> None:
    with pytest.raises(ServerUnavailableError, match="down"):
        anyio.run(_group_of, ServerUnavailableError("down"))


def test_a_nested_failure_comes_out_as_itself() -> None:
    async def nested() -> None:
        with sole_error():
            async with anyio.create_task_group() as tg:
                tg.start_soon(_group_of_raw, StateError("inner"))

    with pytest.raises(StateError, match="inner"):
        anyio.run(nested)


async def _group_of_raw(error: BaseException) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(_fail, error)


def test_an_outage_failing_every_task_comes_out_as_the_first() -> None:
    with pytest.raises(StateError):
        anyio.run(_group_of, StateError("a"), StateError("b"))


def test_a_mixed_group_stays_a_group() -> None:
    with pytest.raises(ExceptionGroup):
        anyio.run(_group_of, StateError("a"), ValueError("b"))


# --- describe and is_service_fault: the one classification every fault boundary uses ---


def test_describe_is_one_printable_line() -> None:
    from dsa110d.errors import describe

    line = describe(ValueError("bad\nline\x1b[31m red\x00"))
    assert line == "ValueError: bad line [31m red"
    assert "\n" not in line and "\x1b" not in line


def test_describe_names_our_errors_by_their_message_alone() -> None:
    from dsa110d.errors import InputFileError, describe

    assert describe(InputFileError("x.hdf5: no Header/time_array")) == (
        "x.hdf5: no Header/time_array"
    )
    assert describe(RuntimeError()) == "RuntimeError"


def test_describe_bounds_a_huge_message() -> None:
    from dsa110d.errors import REASON_MAX_CHARS, describe

    line = describe(ValueError("x" * 10**6))
    assert len(line) == REASON_MAX_CHARS and line.endswith("...")


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("Symlink loop"),
        OverflowError("date value out of range"),
        MemoryError(),
        RecursionError("maximum recursion depth exceeded"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        ValueError("nan"),
    ],
)
def test_any_error_from_one_input_is_that_inputs_fault(error: Exception) -> None:
    from dsa110d.errors import is_service_fault

    assert not is_service_fault(error)


def test_the_state_server_and_cancellation_are_the_services_faults() -> None:
    import redis.exceptions

    from dsa110d.errors import LeaseLostError, is_service_fault

    assert is_service_fault(ServerUnavailableError("down"))
    assert is_service_fault(StateError("busy"))
    assert is_service_fault(redis.exceptions.ConnectionError("reset"))
    assert is_service_fault(KeyboardInterrupt())
    assert is_service_fault(asyncio.CancelledError())
    assert not is_service_fault(LeaseLostError("lease on set x lost"))
