"""``dsa110ctl``: operate a running pipeline (status, queues, dead letters, config)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dsa110d.cli.common import ConfigOption, EnvOption, JsonOption, VersionOption, load, run_app
from dsa110d.config import load_config

app = typer.Typer(
    name="dsa110ctl",
    help="Operate the DSA-110 continuum pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show or check the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.callback()
def _root(version: VersionOption = False) -> None:
    """Operate the DSA-110 continuum pipeline."""


@config_app.command("show")
def config_show(
    env: EnvOption = None, config: ConfigOption = None, json_: JsonOption = False
) -> None:
    """Print the effective configuration, secrets redacted."""
    import yaml

    data = load(config, env).redacted()
    if json_:
        print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False), end="")


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="The configuration file to validate.")],
    env: EnvOption = None,
) -> None:
    """Validate a configuration file: exit 0 when valid, 2 with one line naming the fault."""
    cfg = load_config(file, env)
    print(f"{file}: valid for environment {cfg.env}")


# --------------------------------------------------------------------- alerts, housekeeping


@app.command("alerts")
def alerts_list(
    active: Annotated[bool, typer.Option("--active", help="Only alerts firing now.")] = False,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """List alerts, newest change first (fired, repeated, resolved, notices)."""
    import anyio

    from dsa110d.alerts.report import alert_rows, render_alerts

    rows = anyio.run(alert_rows, load(config, env), active)
    print(json.dumps(rows, indent=2) if json_ else render_alerts(rows))


@app.command("housekeeping")
def housekeeping(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, remove nothing.")] = False,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """Remove what is past its retention now (records, streams, alerts, crash leftovers)."""
    import dataclasses

    import anyio

    from dsa110d.housekeeping import render_report, run_by_hand

    report = anyio.run(run_by_hand, load(config, env), dry_run)
    if json_:
        print(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        print(render_report(report))


def main() -> None:
    run_app(app, "dsa110ctl")
