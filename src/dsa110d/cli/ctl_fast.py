"""``dsa110ctl fast-alerts``: bright new sources found in single chunk images, minutes after
their set landed, and whether the block's mosaic confirmed or retracted each
(:mod:`dsa110d.operations.fast_alerts`)."""

from __future__ import annotations

from typing import Annotated

import anyio
import typer

from dsa110d.cli.common import ConfigOption, EnvOption, JsonOption, load, say
from dsa110d.cli.ctl_output import complete, number, print_json, table, utc
from dsa110d.operations.fast_alerts import STATUSES, latest_fast_alerts

app = typer.Typer()


@app.command("fast-alerts")
def fast_alerts_command(
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only pending, confirmed or retracted alerts.",
            autocompletion=complete(STATUSES),
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Only the newest N.")] = 50,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """Fast alerts: new sources in one chunk's image, newest first, with their status."""
    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"--status: {status!r} is not one of {', '.join(STATUSES)}")
    found = anyio.run(latest_fast_alerts, load(config, env), limit, status)
    if json_:
        print_json(found)
        return
    if not found:
        say("no fast alerts")
        return
    table(
        f"fast alerts ({len(found)}, newest first)",
        ["detected", "name", "chunk", "ra", "dec", "peak mJy", "snr", "status", "block"],
        (
            [utc(float(a.get("detected_at") or 0.0)), a.get("name"), a.get("chunk_id"),
             number(a.get("ra_deg"), 7), number(a.get("dec_deg"), 6),
             number(1e3 * float(a.get("peak_jy") or 0.0)), number(a.get("snr")),
             a.get("status"), a.get("settled_by") or "-"]
            for a in found
        ),
    )  # fmt: skip
