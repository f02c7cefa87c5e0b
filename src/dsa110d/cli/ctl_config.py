"""``dsa110ctl config show | check``: the effective configuration and validating a file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from dsa110d.cli.common import EXIT_OK, EXIT_USAGE, ConfigOption, EnvOption, JsonOption, load, say
from dsa110d.cli.ctl_output import PROGRAM
from dsa110d.config import check_file

app = typer.Typer(name="config", help="Show or check the configuration.", no_args_is_help=True)


@app.command("show")
def config_show(
    env: EnvOption = None, config: ConfigOption = None, json_: JsonOption = False
) -> None:
    """Print the effective configuration, secrets redacted."""
    import yaml

    data = load(config, env).redacted()
    if json_:
        say(json.dumps(data, indent=2))
    else:
        say(yaml.safe_dump(data, sort_keys=False), end="")


@app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="The configuration file to validate.")],
    env: Annotated[
        str | None,
        typer.Option(
            "--env", help="Check only this environment (default: every one the file defines)."
        ),
    ] = None,
) -> None:
    """Validate a configuration file for every environment it defines (or only --env).

    Exit 0 when valid, 2 with one line per fault naming the environments, key and fault."""
    results = check_file(file, env)
    faults: dict[str, list[str]] = {}
    for name, error in results.items():
        if error is not None:
            faults.setdefault(str(error), []).append(name)
    for message, names in faults.items():
        label = "environment" if len(names) == 1 else "environments"
        say(f"{PROGRAM}: {label} {', '.join(names)}: {message}", file=sys.stderr)
    if faults:
        raise typer.Exit(EXIT_USAGE)
    label = "environment" if len(results) == 1 else "environments"
    say(f"{file}: valid for {label} {', '.join(results)}")
    raise typer.Exit(EXIT_OK)
