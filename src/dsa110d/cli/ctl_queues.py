"""``dsa110ctl queues``: every message type's stream, per consumer group (the backlog)."""

from __future__ import annotations

import anyio
import typer

from dsa110d.cli.common import ConfigOption, EnvOption, JsonOption, load
from dsa110d.cli.ctl_output import duration, print_json, table
from dsa110d.operations import queues

app = typer.Typer()


@app.command("queues")
def queues_command(
    env: EnvOption = None, config: ConfigOption = None, json_: JsonOption = False
) -> None:
    """Every message type's stream per consumer group.

    Length, pending, undelivered, consumers (alive/all), oldest pending age, dead letters."""
    rows = anyio.run(queues.queue_stats, load(config, env))
    if json_:
        print_json([r.__dict__ for r in rows])
        return
    table(
        "queues",
        ["type", "group", "length", "pending", "undelivered", "consumers", "oldest pending",
         "dead letters"],
        (
            [r.message_type, r.group, r.length, r.pending, r.undelivered,
             f"{r.consumers_alive}/{r.consumers}", duration(r.oldest_pending_age_sec),
             r.dead_letters]
            for r in rows
        ),
    )  # fmt: skip
