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


def main() -> None:
    run_app(app, "dsa110ctl")
