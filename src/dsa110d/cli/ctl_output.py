"""How every ``dsa110ctl`` command prints: tables, JSON, durations and times, progress bars.

Whatever a command prints may come from the state server, where any producer may have
written a terminal escape or a ``[`` that rich would read as markup: every cell goes through
:func:`~dsa110d.cli.common.printable` as plain text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from dsa110d.cli.common import printable, say
from dsa110d.operations import queues
from dsa110d.science.constants import SECONDS_PER_DAY

PROGRAM = "dsa110ctl"

# Not on a terminal (a pipe, a log), tables get room instead of 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)

HEALTH_STYLE = {"HEALTHY": "green", "DEGRADED": "yellow", "UNHEALTHY": "red", "STOPPING": "cyan"}


def complete(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """Shell completion among ``choices``."""
    return lambda incomplete: [c for c in choices if c.startswith(incomplete)]


def print_json(data: Any) -> None:
    say(json.dumps(data, indent=2, default=str))


def duration(seconds: float | None) -> str:
    """``4d03h``, ``2h05m``, ``3m12s``, ``42s``, ``0.4s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, int(SECONDS_PER_DAY))
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def when(stamp: float) -> str:
    """A Unix time as ISO 8601 UTC to the second; ``-`` for none."""
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds") if stamp else "-"


def utc(stamp: float) -> str:
    """A Unix time as ``YYYY-MM-DD HH:MM`` UTC; ``-`` for none."""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M") if stamp else "-"


def number(value: Any, digits: int = 3) -> str:
    return (
        "-" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)
    )


def _cell(value: Any) -> Text:
    """A table cell as plain text: a ``[`` in a reason is not rich markup (``[/x]`` would
    crash the table), and its control characters are gone."""
    return value if isinstance(value, Text) else Text(printable(str(value)))


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    shown = Table(title=_cell(title), title_justify="left")
    for column in columns:
        shown.add_column(column)
    for row in rows:
        shown.add_row(*(_cell(cell) for cell in row))
    out.print(shown)


def health(text: str) -> Text:
    return Text(printable(text), style=HEALTH_STYLE.get(text, "red"))


def _progress(description: str) -> Progress:
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
        disable=not sys.stderr.isatty(),
    )


def with_progress(description: str, work: Callable[[queues.Progress], Any]) -> Any:
    """Run ``work`` with a progress bar on stderr (when it is a terminal) that it advances."""
    with _progress(description) as bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return work(advance)
