"""``dsa110ctl alerts | housekeeping``: what the daemons' alert rules raised, and retention."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import anyio
import typer

from dsa110d.cli.common import ConfigOption, EnvOption, JsonOption, load, say

app = typer.Typer()


@app.command("alerts")
def alerts_list(
    active: Annotated[bool, typer.Option("--active", help="Only alerts firing now.")] = False,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """List alerts, newest change first (fired, repeated, resolved, notices)."""
    from dsa110d.alerts.report import alert_rows, render_alerts

    rows = anyio.run(alert_rows, load(config, env), active)
    say(json.dumps(rows, indent=2) if json_ else render_alerts(rows))


@app.command("housekeeping")
def housekeeping(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, remove nothing.")] = False,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """Remove what is past its retention now (records, streams, alerts, crash leftovers)."""
    from dsa110d.housekeeping import render_report, run_by_hand

    report = anyio.run(run_by_hand, load(config, env), dry_run)
    if json_:
        say(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        say(render_report(report))
