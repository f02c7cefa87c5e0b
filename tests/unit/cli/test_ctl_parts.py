"""``dsa110ctl`` is assembled from its parts (``cli/ctl.py:PARTS``): every part's commands are
there, a named part is a group, and no two parts claim the same command name (the later one
would silently replace the earlier)."""

from __future__ import annotations

from collections import Counter

import typer

from dsa110d.cli import ctl


def _names(part: typer.Typer) -> list[str]:
    if part.info.name:
        return [str(part.info.name)]
    return [str(typer.main.get_command_name(c.callback.__name__)) if c.name is None else c.name
            for c in part.registered_commands if c.callback is not None]  # fmt: skip


def test_every_part_is_in_the_program_once() -> None:
    claimed = Counter(name for module in ctl.PARTS for name in _names(module.app))
    assert [name for name, count in claimed.items() if count > 1] == []
    program = typer.main.get_command(ctl.app)
    assert isinstance(program, typer.core.TyperGroup)
    assert set(program.commands) == set(claimed)


def test_a_named_part_is_a_group_and_a_nameless_one_adds_top_level_commands() -> None:
    program = typer.main.get_command(ctl.app)
    assert isinstance(program, typer.core.TyperGroup)
    assert isinstance(program.commands["dlq"], typer.core.TyperGroup)
    assert set(program.commands["dlq"].commands) == {"list", "show", "replay", "purge"}
    assert not isinstance(program.commands["status"], typer.core.TyperGroup)
