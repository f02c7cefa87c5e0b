"""What both command-line programs share: loading the config, exit codes, one-line errors.

Exit codes (documented in the man pages): 0 success; 1 a failure at run time; 2 a user's
mistake (bad configuration, bad arguments); 3 the state server cannot be reached.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TextIO

import typer

from dsa110d import __version__
from dsa110d.config import Config, load_config
from dsa110d.errors import ConfigError, DSA110Error, ServerUnavailableError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

EnvOption = Annotated[
    str | None,
    typer.Option("--env", help="development, production or testing (else DSA110_ENV)."),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Configuration file (else DSA110_CONFIG, ./etc, /etc)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LimitOption = Annotated[
    int, typer.Option("--limit", min=0, help="Only the newest N (0: all).", show_default=True)
]


# C0 controls but tab and newline, DEL, C1 controls (ESC and CSI start terminal escapes) and
# the bidirectional overrides that make a line read differently from what it holds.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` without control characters: what the programs print may come from the state
    server, where any producer may have written a terminal escape."""
    return _UNPRINTABLE.sub("", text)


def say(text: object = "", *, end: str = "\n", file: TextIO | None = None) -> None:
    """Print ``text`` with :func:`printable` applied (to stdout unless ``file``)."""
    print(printable(str(text)), end=end, file=file if file is not None else sys.stdout)


def fail(message: str, code: int = EXIT_FAILURE, program: str = "dsa110d") -> NoReturn:
    """Print one line to stderr and exit."""
    say(f"{program}: {message}", file=sys.stderr)
    raise SystemExit(code)


def exit_code_for(exc: DSA110Error) -> int:
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    if isinstance(exc, ServerUnavailableError):
        return EXIT_UNREACHABLE
    return EXIT_FAILURE


def run_app(app: typer.Typer, program: str, argv: list[str] | None = None) -> None:
    """Run a typer app; a dsa110d error becomes one line and its exit code, never a traceback."""
    try:
        app(args=argv, prog_name=program)
    except DSA110Error as exc:
        fail(str(exc), exit_code_for(exc), program)
    except OSError as exc:  # a path the user gave (or configured) that the system refuses
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}", EXIT_FAILURE, program)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def version_callback(value: bool) -> None:
    if value:
        print(f"dsa110d {__version__}")
        raise typer.Exit()


VersionOption = Annotated[
    bool,
    typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version."),
]


def load(config: Path | None, env: str | None) -> Config:
    """The effective configuration for a command."""
    return load_config(config, env)


Command = Callable[..., None]
