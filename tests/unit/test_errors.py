"""``sole_error``: a task group's failure reaches ``except <kind>`` as itself."""

from __future__ import annotations

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
