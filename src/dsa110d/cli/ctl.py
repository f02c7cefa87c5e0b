"""``dsa110ctl``: operate a running pipeline (daemons, health, queues, dead letters, config).

Only parsing and printing live in ``cli/``; the work is in :mod:`dsa110d.operations`. Every
command that prints a table takes ``--json``. Exit codes are those of
:mod:`dsa110d.cli.common` (0 ok, 1 failure, 2 usage or configuration, 3 the state server
cannot be reached), except ``health``: 0 healthy, 1 degraded, 2 unhealthy, 3 cannot tell.

This module only assembles the program: each ``cli/ctl_*.py`` module holds the commands of
one part of the pipeline on its own ``typer.Typer`` called ``app``, printing through
:mod:`dsa110d.cli.ctl_output`:

* a ``Typer()`` without a name contributes top-level commands (``dsa110ctl status``);
* a ``Typer(name="dlq", help=..., no_args_is_help=True)`` is a command group
  (``dsa110ctl dlq list``). The name must be on the group's own ``Typer``: a part without
  one has its commands join the top level.

Adding a command or a group is one new module and one line here, its entry in ``PARTS``
(the order of ``PARTS`` is the order of ``dsa110ctl --help``). Every new command and option
must also be documented in ``man/dsa110ctl.1.scd`` (``tests/unit/test_manpages.py`` checks).
"""

from __future__ import annotations

from types import ModuleType

import typer

from dsa110d.cli import (
    ctl_analysis,
    ctl_cal,
    ctl_config,
    ctl_dlq,
    ctl_fast,
    ctl_queues,
    ctl_records,
    ctl_services,
    ctl_upkeep,
)
from dsa110d.cli.common import VersionOption, run_app
from dsa110d.cli.ctl_output import PROGRAM

PARTS: tuple[ModuleType, ...] = (
    ctl_services,  # status, health, web-url, start, stop, restart
    ctl_queues,  # queues
    ctl_records,  # sets, blocks, candidates
    ctl_fast,  # fast-alerts
    ctl_analysis,  # recompute, lightcurve
    ctl_upkeep,  # alerts, housekeeping
    ctl_config,  # config show | check
    ctl_dlq,  # dlq list | show | replay | purge
    ctl_cal,  # cal list | show | resolve
)
"""The modules whose ``app`` makes up ``dsa110ctl``: one line per part."""

app = typer.Typer(
    name=PROGRAM,
    help="Operate the DSA-110 continuum pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal
)


def register(part: typer.Typer) -> None:
    """Add ``part``'s commands to ``dsa110ctl``: as a group when it has a name, else at the top."""
    if part.info.name:
        app.add_typer(part)
    else:
        app.registered_commands.extend(part.registered_commands)


for _part in PARTS:
    register(_part.app)


@app.callback()
def _root(version: VersionOption = False) -> None:
    """Operate the DSA-110 continuum pipeline."""


def main() -> None:
    run_app(app, PROGRAM)
