"""``dsa110ctl``: operate a running pipeline (daemons, health, queues, dead letters, config).

Only parsing and printing live here; the work is in :mod:`dsa110d.operations`. Every command
that prints a table takes ``--json``. Exit codes are those of :mod:`dsa110d.cli.common`
(0 ok, 1 failure, 2 usage or configuration, 3 the state server cannot be reached), except
``health``: 0 healthy, 1 degraded, 2 unhealthy, 3 cannot tell (server unreachable).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from dsa110d.cli import ctl_cal
from dsa110d.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    ConfigOption,
    EnvOption,
    JsonOption,
    VersionOption,
    fail,
    load,
    printable,
    run_app,
    say,
)
from dsa110d.config import ENVIRONMENTS, check_file
from dsa110d.messages import MessageType
from dsa110d.operations import analysis, processes, queues, records, status
from dsa110d.operations.processes import INSTANCES, MODES, Outcome
from dsa110d.science.constants import SECONDS_PER_DAY

PROGRAM = "dsa110ctl"

app = typer.Typer(
    name=PROGRAM,
    help="Operate the DSA-110 continuum pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal
)
config_app = typer.Typer(help="Show or check the configuration.", no_args_is_help=True)
dlq_app = typer.Typer(help="List, show, replay or purge dead letters.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(dlq_app, name="dlq")
app.add_typer(ctl_cal.app, name="cal")

# Not on a terminal (a pipe, a log), tables get room instead of 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _complete(choices: Sequence[str]) -> Callable[[str], list[str]]:
    return lambda incomplete: [c for c in choices if c.startswith(incomplete)]


def _check_id(value: str | None) -> str | None:
    if value is None:
        return None
    ms, _, seq = value.partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()):
        raise typer.BadParameter(f"{value!r} is not a stream id like 1764160000123-0")
    return value


ServiceArgument = Annotated[
    str | None,
    typer.Argument(
        help="hdf5_watcher, ms_processor, variability_analyzer, service_manager or all "
        "(default: every one); watcher, processor, analyzer also work.",
        autocompletion=_complete(INSTANCES),
        show_default=False,
    ),
]
ModeOption = Annotated[
    str,
    typer.Option(
        "--mode",
        help="systemd, process (background processes) or auto: systemd when it runs the units.",
        autocompletion=_complete(MODES),
    ),
]
TypeOption = Annotated[
    str | None,
    typer.Option(
        "--type",
        help="Only this message type.",
        autocompletion=_complete([t.value for t in MessageType]),
    ),
]
DeadIdArgument = Annotated[
    str | None,
    typer.Argument(
        help="A dead-letter id (from dlq list).", callback=_check_id, show_default=False
    ),
]


@app.callback()
def _root(version: VersionOption = False) -> None:
    """Operate the DSA-110 continuum pipeline."""


# --------------------------------------------------------------------------- printing


def _print_json(data: Any) -> None:
    say(json.dumps(data, indent=2, default=str))


def _duration(seconds: float | None) -> str:
    """``4d03h``, ``2h05m``, ``3m12s``, ``42s``, ``0.4s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, int(SECONDS_PER_DAY))
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _cell(value: Any) -> Text:
    """A table cell as plain text: a ``[`` in a reason is not rich markup (``[/x]`` would
    crash the table), and its control characters are gone."""
    return value if isinstance(value, Text) else Text(printable(str(value)))


def _table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    table = Table(title=_cell(title), title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(cell) for cell in row))
    out.print(table)


HEALTH_STYLE = {"HEALTHY": "green", "DEGRADED": "yellow", "UNHEALTHY": "red", "STOPPING": "cyan"}


def _health(text: str) -> Text:
    return Text(printable(text), style=HEALTH_STYLE.get(text, "red"))


def _progress(description: str) -> Progress:
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
        disable=not sys.stderr.isatty(),
    )


def _outcomes(outcomes: list[Outcome], json_: bool) -> None:
    """Print what start/stop/restart did; exit 1 when any of it failed."""
    if json_:
        _print_json([o.to_dict() for o in outcomes])
    else:
        for o in outcomes:
            mark = "ok" if o.ok else "FAILED"
            pid = f" pid {o.pid}" if o.pid else ""
            say(f"{o.action} {o.service}: {mark}{pid} ({o.backend}): {o.detail}")
    if not all(o.ok for o in outcomes):
        raise typer.Exit(EXIT_FAILURE)


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
        _print_json([r.to_dict() for r in rows])
        return
    if not rows:
        say(f"no dsa110d daemon is running ({status.registry_location(cfg)})")
        return
    _table(
        f"dsa110d services ({status.registry_location(cfg)})",
        ["host", "pid", "service", "state", "health", "reason", "uptime", "heartbeat",
         "processed", "failed", "queue lag", "restarts"],
        (
            [r.host, r.pid, r.service, r.state, _health(r.health), r.reason or "-",
             _duration(r.uptime_sec), f"{_duration(r.heartbeat_age_sec)} ago",
             r.processed, r.failed, _duration(r.queue_lag_sec), r.restarts]
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
        _print_json(summary.to_dict())
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
        _print_json({"url": web.url, "api": web.url + "api/v1/", "enabled": web.enabled,
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


def _backend(mode: str, env: str | None, config: Path | None) -> processes.Backend:
    return processes.choose_backend(mode, load(config, env), config)


@app.command("start")
def start_command(
    words: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[ENV] [SERVICE]",
            help="Environment (development, production, testing) and instance (watcher, "
            "processor, analyzer or all; default all).",
            autocompletion=_complete([*ENVIRONMENTS, *INSTANCES]),
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
            autocompletion=_complete(INSTANCES),
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


# --------------------------------------------------------------------------- queues


@app.command("queues")
def queues_command(
    env: EnvOption = None, config: ConfigOption = None, json_: JsonOption = False
) -> None:
    """Every message type's stream per consumer group.

    Length, pending, undelivered, consumers (alive/all), oldest pending age, dead letters."""
    rows = anyio.run(queues.queue_stats, load(config, env))
    if json_:
        _print_json([r.__dict__ for r in rows])
        return
    _table(
        "queues",
        ["type", "group", "length", "pending", "undelivered", "consumers", "oldest pending",
         "dead letters"],
        (
            [r.message_type, r.group, r.length, r.pending, r.undelivered,
             f"{r.consumers_alive}/{r.consumers}", _duration(r.oldest_pending_age_sec),
             r.dead_letters]
            for r in rows
        ),
    )  # fmt: skip


# --------------------------------------------------------------------------- dead letters


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds") if stamp else "-"


@dlq_app.command("list")
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
        _print_json([letter.to_dict() for letter in letters])
        return
    if not letters:
        say("no dead letters")
        return
    _table(
        "dead letters",
        ["id", "type", "dead at", "attempts", "message", "reason"],
        (
            [d.dead_id, d.message_type, _when(d.dead_at), len(d.attempts), d.message_id or "-",
             d.reason]
            for d in letters
        ),
    )  # fmt: skip


@dlq_app.command("show")
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
        _print_json(letter.to_dict(with_raw=True))
        return
    say(f"id:        {letter.dead_id} ({letter.message_type}, was entry {letter.entry_id})")
    say(f"dead at:   {_when(letter.dead_at)} by {letter.consumer or '-'}")
    say(f"reason:    {letter.reason}")
    say(f"message:   {letter.message_id or '-'} (trace {letter.trace_id or '-'})")
    for number, attempt in enumerate(letter.attempts, 1):
        say(f"attempt {number}: {_when(float(attempt.get('at', 0)))} {attempt.get('error', '')}")
    say("original:")
    say(letter.raw)


def _with_progress(description: str, work: Callable[[queues.Progress], Any]) -> Any:
    with _progress(description) as bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return work(advance)


@dlq_app.command("replay")
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
    done = _with_progress(
        "replaying",
        lambda advance: anyio.run(queues.replay_dead_letters, cfg, dead_id, message_type, advance),
    )
    if json_:
        _print_json([r.__dict__ for r in done])
    else:
        for r in done:
            say(f"replayed {r.dead_id} ({r.message_type}) as {r.new_id}")
        say(f"{len(done)} dead letters replayed")


@dlq_app.command("purge")
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
    count = _with_progress(
        "purging",
        lambda advance: anyio.run(queues.purge_dead_letters, cfg, dead_id, message_type, advance),
    )
    if json_:
        _print_json({"purged": count})
    else:
        say(f"{count} dead letters purged")


# --------------------------------------------------------------------------- records

LimitOption = Annotated[
    int, typer.Option("--limit", min=0, help="Only the newest N (0: all).", show_default=True)
]


@app.command("sets")
def sets_command(
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            help=f"Only sets in this state ({', '.join(records.SET_STATES)}).",
            autocompletion=_complete(records.SET_STATES),
        ),
    ] = None,
    limit: LimitOption = 50,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """Subband sets recorded by the watchers, oldest first.

    State, subbands present of expected, missing subbands, attempts, recorded faults."""
    if state is not None and state not in records.SET_STATES:
        raise typer.BadParameter(f"{state!r} is not one of {', '.join(records.SET_STATES)}")
    rows = anyio.run(records.list_sets, load(config, env), state, limit)
    if json_:
        _print_json([r.to_dict() for r in rows])
        return
    if not rows:
        say("no sets" + (f" in state {state}" if state else ""))
        return
    _table(
        "sets",
        ["set", "state", "subbands", "missing", "attempts", "faults", "last fault"],
        (
            [r.set_id, r.state, f"{r.subbands}/{r.expected}" + (" partial" if r.partial else ""),
             ",".join(f"{m:02d}" for m in r.missing) or "-", r.attempts, r.errors,
             r.last_error or "-"]
            for r in rows
        ),
    )  # fmt: skip


def _utc(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M") if stamp else "-"


@app.command("blocks")
def blocks_command(
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            help=f"Only blocks in this state ({', '.join(records.BLOCK_STATES)}).",
            autocompletion=_complete(records.BLOCK_STATES),
        ),
    ] = None,
    limit: LimitOption = 50,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """Blocks (mosaics of chunks) recorded by the processors, oldest first.

    Span, state, version, chunks used, missing slots, whether newer chunks await a re-run,
    attempts and the last error."""
    if state is not None and state not in records.BLOCK_STATES:
        raise typer.BadParameter(f"{state!r} is not one of {', '.join(records.BLOCK_STATES)}")
    rows = anyio.run(records.list_blocks, load(config, env), state, limit)
    if json_:
        _print_json([r.to_dict() for r in rows])
        return
    if not rows:
        say("no blocks" + (f" in state {state}" if state else ""))
        return
    _table(
        "blocks",
        ["block", "start (UTC)", "end (UTC)", "state", "version", "chunks", "missing",
         "re-run due", "attempts", "error"],
        (
            [r.block_id, _utc(r.start), _utc(r.end), r.state, r.version, r.chunks,
             ",".join(str(m) for m in r.missing_slots) or "-", "yes" if r.stale else "no",
             r.attempts, r.error or "-"]
            for r in rows
        ),
    )  # fmt: skip


def _number(value: Any, digits: int = 3) -> str:
    return (
        "-" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)
    )


@app.command("candidates")
def candidates_command(
    kind: Annotated[
        str | None,
        typer.Option(
            "--class",
            help="Only transient or variable candidates.",
            autocompletion=_complete(records.CANDIDATE_CLASSES),
        ),
    ] = None,
    limit: LimitOption = 50,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """The variable and transient source candidates of the newest analysis run, best first."""
    if kind is not None and kind not in records.CANDIDATE_CLASSES:
        raise typer.BadParameter(f"--class: {kind!r} is not transient or variable")
    report = anyio.run(records.latest_candidates, load(config, env), kind)
    if report is None:
        if json_:
            _print_json(None)
        else:
            say("no candidates: no variability analysis has run yet")
        return
    shown = report.candidates[:limit] if limit else report.candidates
    if json_:
        _print_json({**report.to_dict(), "candidates": shown})
        return
    run_time = report.run.get("run_time", "?")
    if not shown:
        say(f"no candidates in the run of {run_time}")
        return
    _table(
        f"candidates of the run of {run_time} ({len(report.candidates)}; from {report.source})",
        ["rank", "source", "class", "by", "ra", "dec", "n", "mean Jy", "V", "eta", "q", "m"],
        (
            [c.get("rank"), c.get("source_id"), c.get("class"), c.get("variable_by") or "-",
             _number(c.get("ra_deg"), 7), _number(c.get("dec_deg"), 6), c.get("n"),
             _number(c.get("mean_flux_jy")), _number(c.get("v")), _number(c.get("eta")),
             _number(c.get("q_value")), _number(c.get("m"))]
            for c in shown
        ),
    )  # fmt: skip


# --------------------------------------------------------------------------- analysis


def _recompute_lines(request: analysis.RecomputeRequest, now: float) -> list[str]:
    """What ``recompute`` prints: the request, who will run it, what it also takes."""
    if request.analyzers:
        who = f"the next analyzer to look runs it ({request.analyzers} running)"
    else:
        who = "no analyzer is running: the first to start runs it"
    lines = [f"full recompute requested at {_when(request.requested_at)}: {who}"]
    if request.pending_blocks:
        lines.append(f"the run also takes {request.pending_blocks} noted blocks")
    if request.last_finished is None:
        lines.append("last run: none yet")
    else:
        age = _duration(max(0.0, now - request.last_finished))
        lines.append(f"last run: {request.last_status or '?'}, {age} ago")
    return lines


@app.command("recompute")
def recompute_command(
    env: EnvOption = None, config: ConfigOption = None, json_: JsonOption = False
) -> None:
    """Ask the variability analyzer for a full recompute from every photometry file.

    The request is kept on the state server until a run that took it succeeds; whichever
    analyzer looks next runs it at once (or the first to start, when none runs)."""
    request = anyio.run(analysis.request_recompute, load(config, env))
    if json_:
        _print_json(request.to_dict())
        return
    for line in _recompute_lines(request, time.time()):
        say(line)


@app.command("lightcurve")
def lightcurve_command(
    source: Annotated[str, typer.Argument(help="The source id (as in the catalog).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the light curve to this file."),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="File format for --output: csv or votable.",
            autocompletion=_complete(analysis.LIGHT_CURVE_FORMATS),
        ),
    ] = "csv",
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """One source's light curve from the photometry files (the latest version of each block).

    Printed as a table (or JSON); with --output, written as CSV or an IVOA VOTable."""
    if fmt not in analysis.LIGHT_CURVE_FORMATS:
        raise typer.BadParameter(f"--format: {fmt!r} is not csv or votable")
    curve = analysis.light_curve(load(config, env), source)
    if output is not None:
        path = analysis.export_light_curve(curve, fmt, output)
        print(f"{len(curve)} measurements of {source} written to {path}")
        return
    if json_:
        _print_json(analysis.light_curve_records(curve))
        return
    if not len(curve):
        print(f"no photometry of {source}")
        return
    _table(
        f"light curve of {source} ({len(curve)} measurements, {int(curve['usable'].sum())} usable)",
        ["block", "mjd", "flux Jy", "error Jy", "flags", "usable"],
        (
            [r.block_id, f"{r.mjd:.6f}", _number(r.flux_jy, 5), _number(r.flux_err_jy, 3),
             getattr(r, "flag_names", "") or "-", "yes" if r.usable else "no"]
            for r in curve.itertuples(index=False)
        ),
    )  # fmt: skip


# --------------------------------------------------------------------------- configuration


@config_app.command("show")
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


@config_app.command("check")
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
    say(json.dumps(rows, indent=2) if json_ else render_alerts(rows))


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
        say(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        say(render_report(report))


def main() -> None:
    run_app(app, PROGRAM)
