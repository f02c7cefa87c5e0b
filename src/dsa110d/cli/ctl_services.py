"""``dsa110ctl status | health | web-url | start | stop | restart``: the daemons and their services.

Which daemons run and how they fare come from the registry
(:mod:`dsa110d.operations.status`); starting and stopping goes through systemd or background
processes (:mod:`dsa110d.operations.processes`). ``health`` has its own exit codes: 0 healthy,
1 degraded, 2 unhealthy, 3 cannot tell (server unreachable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import typer

from dsa110d.cli.common import EXIT_FAILURE, EXIT_OK, ConfigOption, EnvOption, JsonOption, load, say
from dsa110d.cli.ctl_output import complete, duration, health, print_json, table
from dsa110d.config import ENVIRONMENTS
from dsa110d.operations import processes, status
from dsa110d.operations.backend import INSTANCES, Backend, Outcome
from dsa110d.operations.processes import MODES

app = typer.Typer()

ServiceArgument = Annotated[
    str | None,
    typer.Argument(
        help="hdf5_watcher, ms_processor, variability_analyzer, service_manager or all "
        "(default: every one); watcher, processor, analyzer also work.",
        autocompletion=complete(INSTANCES),
        show_default=False,
    ),
]
ModeOption = Annotated[
    str,
    typer.Option(
        "--mode",
        help="systemd, process (background processes) or auto: systemd when it runs the units.",
        autocompletion=complete(MODES),
    ),
]


# --------------------------------------------------------------------------- status and health


@app.command("status")
def status_command(
    service: ServiceArgument = None,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """Every daemon and service on every host, from the registry.

    Health and reason, uptime, last heartbeat, processed and failed jobs, queue lag.
    Exit 0 (also when none is running)."""
    cfg = load(config, env)
    rows = anyio.run(status.service_status, cfg, service)
    if json_:
        print_json([r.to_dict() for r in rows])
        return
    if not rows:
        say(f"no dsa110d daemon is running ({status.registry_location(cfg)})")
        return
    table(
        f"dsa110d services ({status.registry_location(cfg)})",
        ["host", "pid", "service", "state", "health", "reason", "uptime", "heartbeat",
         "processed", "failed", "queue lag", "restarts"],
        (
            [r.host, r.pid, r.service, r.state, health(r.health), r.reason or "-",
             duration(r.uptime_sec), f"{duration(r.heartbeat_age_sec)} ago",
             r.processed, r.failed, duration(r.queue_lag_sec), r.restarts]
            for r in rows
        ),
    )  # fmt: skip


@app.command("health")
def health_command(
    env: EnvOption = None, config: ConfigOption = None, json_: JsonOption = False
) -> None:
    """One line for monitoring probes: exit 0 healthy, 1 degraded, 2 unhealthy.

    Also 2 when no daemon is running; 3 when the state server cannot be reached."""
    summary = anyio.run(status.pipeline_health, load(config, env))
    if json_:
        print_json(summary.to_dict())
    else:
        say(f"{summary.health}: {summary.reason}")
    raise typer.Exit(summary.exit_code)


@app.command("web-url")
def web_url_command(
    env: EnvOption = None, config: ConfigOption = None, json_: JsonOption = False
) -> None:
    """Where the web console and its HTTP API answer, and whether a daemon serves them.

    The console is the `web` service: set `services.web.enabled: true`, then `dsa110ctl start
    web` (or `all`). Exit 0 when a daemon serves it, 1 when none does."""
    cfg = load(config, env)
    web = cfg.services.web
    serving = anyio.run(lambda: status.service_status(cfg, "web", fresh=False))
    hosts = sorted({r.host for r in serving})
    if json_:
        print_json({"url": web.url, "api": web.url + "api/v1/", "enabled": web.enabled,
                    "serving_hosts": hosts})  # fmt: skip
    else:
        print(web.url)
        if hosts:
            print(f"served by the web service on {', '.join(hosts)}; API at {web.url}api/v1/")
        elif not web.enabled:
            print("the console is off: set services.web.enabled: true, then dsa110ctl start web")
        else:
            print("no daemon serves it now: dsa110ctl start web (or all)")
    raise typer.Exit(EXIT_OK if hosts else EXIT_FAILURE)


# --------------------------------------------------------------------------- start, stop, restart


def _outcomes(outcomes: list[Outcome], json_: bool) -> None:
    """Print what start/stop/restart did; exit 1 when any of it failed."""
    if json_:
        print_json([o.to_dict() for o in outcomes])
    else:
        for o in outcomes:
            mark = "ok" if o.ok else "FAILED"
            pid = f" pid {o.pid}" if o.pid else ""
            say(f"{o.action} {o.service}: {mark}{pid} ({o.backend}): {o.detail}")
    if not all(o.ok for o in outcomes):
        raise typer.Exit(EXIT_FAILURE)


def _start_arguments(words: list[str]) -> tuple[str | None, str]:
    """``[ENV] [SERVICE]``: either may be left out (``start watcher``, ``start production``)."""
    env: str | None = None
    service = "all"
    rest = list(words)
    if rest and rest[0] in ENVIRONMENTS:
        env = rest.pop(0)
    if rest:
        service = rest.pop(0)
    if rest or service not in INSTANCES:
        bad = rest[0] if rest else service
        raise typer.BadParameter(
            f"{bad!r}: expected [ENV] [SERVICE], ENV one of {', '.join(ENVIRONMENTS)}, "
            f"SERVICE one of {', '.join(INSTANCES)}"
        )
    return env, service


def _backend(mode: str, env: str | None, config: Path | None) -> Backend:
    return processes.choose_backend(mode, load(config, env), config)


@app.command("start")
def start_command(
    words: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[ENV] [SERVICE]",
            help="Environment (development, production, testing) and instance (watcher, "
            "processor, analyzer or all; default all).",
            autocompletion=complete([*ENVIRONMENTS, *INSTANCES]),
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    mode: ModeOption = "auto",
    json_: JsonOption = False,
) -> None:
    """Start a daemon running SERVICE (default all) and wait until it runs.

    Under systemd: systemctl start dsa110d@SERVICE. Otherwise a background process with its
    pid file under <state_dir>/run and its log in <log_dir>/SERVICE.log."""
    env, service = _start_arguments(words or [])
    backend = _backend(mode, env, config)
    if backend.name == "systemd" and env is not None:
        say(f"note: under systemd the environment comes from the unit, not {env!r}")
    _outcomes([anyio.run(backend.start, service)], json_)


@app.command("stop")
def stop_command(
    service: ServiceArgument = None,
    env: EnvOption = None,
    config: ConfigOption = None,
    mode: ModeOption = "auto",
    json_: JsonOption = False,
) -> None:
    """Stop SERVICE (default every running instance).

    SIGTERM, wait for the graceful shutdown, SIGKILL only past it; reports which."""
    backend = _backend(mode, env, config)
    _outcomes(anyio.run(backend.stop, service), json_)


@app.command("restart")
def restart_command(
    service: Annotated[
        str,
        typer.Argument(
            help="hdf5_watcher, ms_processor, variability_analyzer, service_manager or all.",
            autocompletion=complete(INSTANCES),
        ),
    ],
    env: EnvOption = None,
    config: ConfigOption = None,
    mode: ModeOption = "auto",
    json_: JsonOption = False,
) -> None:
    """Stop and start SERVICE.

    systemctl restart under systemd; the same command line again for a background process."""
    backend = _backend(mode, env, config)
    _outcomes([anyio.run(backend.restart, service)], json_)
