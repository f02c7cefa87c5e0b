"""``dsa110d``: the daemon and its one-shot tools (demo, simulate, convert)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import typer

from dsa110d import logs
from dsa110d.cli.common import (
    ConfigOption,
    EnvOption,
    VersionOption,
    fail,
    load,
    run_app,
)
from dsa110d.config import Config

SERVICE_NAMES = ("watcher", "processor", "analyzer")

app = typer.Typer(
    name="dsa110d",
    help="The DSA-110 continuum pipeline daemon and its one-shot tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(version: VersionOption = False) -> None:
    """The DSA-110 continuum pipeline daemon and its one-shot tools."""


def parse_services(spec: str) -> list[str]:
    """``all`` or a comma-separated subset of watcher, processor, analyzer."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if names == ["all"]:
        return list(SERVICE_NAMES)
    unknown = [n for n in names if n not in SERVICE_NAMES]
    if unknown or not names:
        fail(
            f"--services: unknown service {unknown[0] if unknown else spec!r}; "
            f"choose from {', '.join(SERVICE_NAMES)} or all",
            code=2,
        )
    return names


def setup_logging(
    config: Config, service: str, log_level: str | None, log_format: str | None
) -> None:
    log_file = config.paths.log_dir / f"{service}.log" if config.logging.file else None
    fmt = log_format or config.logging.format
    if fmt not in ("auto", "json", "console"):
        fail(f"--log-format: {fmt!r} is not auto, json or console", code=2)
    logs.configure(level=log_level or config.logging.level, fmt=fmt, log_file=log_file)  # type: ignore[arg-type]
    logs.bind(service=service)


@app.command()
def run(
    env: EnvOption = None,
    config: ConfigOption = None,
    services: Annotated[
        str, typer.Option("--services", help="watcher,processor,analyzer or all.")
    ] = "all",
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
    log_format: Annotated[str | None, typer.Option("--log-format")] = None,
) -> None:
    """Run the daemon with the chosen services until SIGTERM or SIGINT."""
    from dsa110d.supervisor import run_daemon

    cfg = load(config, env)
    chosen = parse_services(services)
    setup_logging(
        cfg, "all" if len(chosen) == len(SERVICE_NAMES) else "+".join(chosen), log_level, log_format
    )
    raise typer.Exit(anyio.run(run_daemon, cfg, chosen))


@app.command()
def demo(
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Keep the demo's files here.")
    ] = None,
) -> None:
    """Run the pipeline on simulated data with an embedded server (the README's first command)."""
    from dsa110d.demo import run_demo

    raise typer.Exit(run_demo(workdir))


@app.command()
def convert(
    files: Annotated[list[Path], typer.Argument(help="The subband files (UVH5) of one set.")],
    out: Annotated[Path, typer.Option("--out", help="The Measurement Set to write.")],
    partial: Annotated[
        bool, typer.Option("--partial", help="Convert an incomplete set; missing subbands flagged.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Convert one subband set into one Measurement Set (atomically; an existing complete MS
    is left as it is)."""
    import json

    from dsa110d.science.convert import convert_set

    result = convert_set(files, out, partial=partial)
    if json_out:
        print(json.dumps(result.to_dict()))
        return
    verb = "exists" if result.reused else f"written in {result.seconds:.1f} s"
    flagged = f", missing subbands {list(result.missing_subbands)} flagged" if result.missing_subbands else ""
    print(
        f"{result.ms}: {verb}; {result.n_rows} rows ({result.n_times} integrations x "
        f"{result.n_baselines} baselines), {result.n_channels} channels{flagged}"
    )


def main() -> None:
    run_app(app, "dsa110d")
