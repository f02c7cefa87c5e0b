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

SERVICE_NAMES = ("watcher", "processor", "analyzer")  # what ``all`` means

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
    """``all`` or a comma-separated subset of the registered services (watcher, processor,
    analyzer, and any added through ``$DSA110_SERVICE_MODULES``)."""
    from dsa110d.services.base import load_service_modules

    known = load_service_modules()
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if names == ["all"]:
        return list(SERVICE_NAMES)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        fail(
            f"--services: unknown service {unknown[0] if unknown else spec!r}; "
            f"choose from {', '.join(known)} or all",
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
    allow_root: Annotated[
        bool, typer.Option("--allow-root", help="Run as root (else DSA110_ALLOW_ROOT=1).")
    ] = False,
) -> None:
    """Run the daemon with the chosen services until SIGTERM or SIGINT."""
    from dsa110d.privileges import refuse_root, root_allowed, secure_process
    from dsa110d.supervisor import run_daemon

    refuse_root(root_allowed(allow_root))
    cfg = load(config, env)
    secure_process(cfg.paths.state_dir, cfg.redis.embedded)
    chosen = parse_services(services)
    setup_logging(
        cfg, "all" if len(chosen) == len(SERVICE_NAMES) else "+".join(chosen), log_level, log_format
    )
    raise typer.Exit(anyio.run(run_daemon, cfg, chosen, lambda: load(config, env)))


@app.command()
def demo(
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Keep the demo's files here.")
    ] = None,
) -> None:
    """Run the pipeline on simulated data with an embedded server (the README's first command)."""
    from dsa110d.demo import run_demo

    raise typer.Exit(run_demo(workdir))


def main() -> None:
    run_app(app, "dsa110d")
