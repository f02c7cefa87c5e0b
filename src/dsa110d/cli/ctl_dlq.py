"""``dsa110ctl dlq list | show | replay | purge``: the dead letters of every message type."""

from __future__ import annotations

import sys
from typing import Annotated

import anyio
import typer

from dsa110d.cli.common import EXIT_USAGE, ConfigOption, EnvOption, JsonOption, fail, load, say
from dsa110d.cli.ctl_output import PROGRAM, complete, print_json, table, when, with_progress
from dsa110d.messages import MessageType
from dsa110d.operations import queues

app = typer.Typer(
    name="dlq", help="List, show, replay or purge dead letters.", no_args_is_help=True
)


def _check_id(value: str | None) -> str | None:
    if value is None:
        return None
    ms, _, seq = value.partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()):
        raise typer.BadParameter(f"{value!r} is not a stream id like 1764160000123-0")
    return value


TypeOption = Annotated[
    str | None,
    typer.Option(
        "--type",
        help="Only this message type.",
        autocompletion=complete([t.value for t in MessageType]),
    ),
]
DeadIdArgument = Annotated[
    str | None,
    typer.Argument(
        help="A dead-letter id (from dlq list).", callback=_check_id, show_default=False
    ),
]


@app.command("list")
def dlq_list(
    message_type: TypeOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many per type.")] = 100,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """The dead letters of every message type: id, when, attempts, reason."""
    letters = anyio.run(queues.list_dead_letters, load(config, env), message_type, limit)
    if json_:
        print_json([letter.to_dict() for letter in letters])
        return
    if not letters:
        say("no dead letters")
        return
    table(
        "dead letters",
        ["id", "type", "dead at", "attempts", "message", "reason"],
        (
            [d.dead_id, d.message_type, when(d.dead_at), len(d.attempts), d.message_id or "-",
             d.reason]
            for d in letters
        ),
    )  # fmt: skip


@app.command("show")
def dlq_show(
    dead_id: Annotated[
        str, typer.Argument(help="A dead-letter id (from dlq list).", callback=_check_id)
    ],
    message_type: TypeOption = None,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """One dead letter: reason, every failed attempt and the original message."""
    letter = anyio.run(queues.show_dead_letter, load(config, env), dead_id, message_type)
    if json_:
        print_json(letter.to_dict(with_raw=True))
        return
    say(f"id:        {letter.dead_id} ({letter.message_type}, was entry {letter.entry_id})")
    say(f"dead at:   {when(letter.dead_at)} by {letter.consumer or '-'}")
    say(f"reason:    {letter.reason}")
    say(f"message:   {letter.message_id or '-'} (trace {letter.trace_id or '-'})")
    for number, attempt in enumerate(letter.attempts, 1):
        say(f"attempt {number}: {when(float(attempt.get('at', 0)))} {attempt.get('error', '')}")
    say("original:")
    say(letter.raw)


@app.command("replay")
def dlq_replay(
    dead_id: DeadIdArgument = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    message_type: TypeOption = None,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """Put one dead letter (ID) or every one (--all) back on its stream."""
    if (dead_id is None) == (not all_):
        fail("dlq replay: give one dead-letter ID or --all", EXIT_USAGE, PROGRAM)
    cfg = load(config, env)
    done = with_progress(
        "replaying",
        lambda advance: anyio.run(queues.replay_dead_letters, cfg, dead_id, message_type, advance),
    )
    if json_:
        print_json([r.__dict__ for r in done])
    else:
        for r in done:
            say(f"replayed {r.dead_id} ({r.message_type}) as {r.new_id}")
        say(f"{len(done)} dead letters replayed")


@app.command("purge")
def dlq_purge(
    dead_id: DeadIdArgument = None,
    message_type: TypeOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """Delete one dead letter (ID), or every one (of --type, or of all types)."""
    cfg = load(config, env)
    if dead_id is None and not yes:
        what = message_type or "every message type"
        if not sys.stdin.isatty():
            fail(f"dlq purge: deleting the dead letters of {what} needs --yes", EXIT_USAGE, PROGRAM)
        typer.confirm(f"Delete every dead letter of {what}?", abort=True)
    count = with_progress(
        "purging",
        lambda advance: anyio.run(queues.purge_dead_letters, cfg, dead_id, message_type, advance),
    )
    if json_:
        print_json({"purged": count})
    else:
        say(f"{count} dead letters purged")
