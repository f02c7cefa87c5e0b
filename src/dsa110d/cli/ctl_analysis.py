"""``dsa110ctl recompute | lightcurve``: the variability analysis, asked for and read back."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import anyio
import typer

from dsa110d.cli.common import ConfigOption, EnvOption, JsonOption, load, say
from dsa110d.cli.ctl_output import complete, duration, number, print_json, table, when
from dsa110d.operations import analysis

app = typer.Typer()


def recompute_lines(request: analysis.RecomputeRequest, now: float) -> list[str]:
    """What ``recompute`` prints: the request, who will run it, what it also takes."""
    if request.analyzers:
        who = f"the next analyzer to look runs it ({request.analyzers} running)"
    else:
        who = "no analyzer is running: the first to start runs it"
    lines = [f"full recompute requested at {when(request.requested_at)}: {who}"]
    if request.pending_blocks:
        lines.append(f"the run also takes {request.pending_blocks} noted blocks")
    if request.last_finished is None:
        lines.append("last run: none yet")
    else:
        age = duration(max(0.0, now - request.last_finished))
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
        print_json(request.to_dict())
        return
    for line in recompute_lines(request, time.time()):
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
            autocompletion=complete(analysis.LIGHT_CURVE_FORMATS),
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
        print_json(analysis.light_curve_records(curve))
        return
    if not len(curve):
        print(f"no photometry of {source}")
        return
    table(
        f"light curve of {source} ({len(curve)} measurements, {int(curve['usable'].sum())} usable)",
        ["block", "mjd", "flux Jy", "error Jy", "flags", "usable"],
        (
            [r.block_id, f"{r.mjd:.6f}", number(r.flux_jy, 5), number(r.flux_err_jy, 3),
             getattr(r, "flag_names", "") or "-", "yes" if r.usable else "no"]
            for r in curve.itertuples(index=False)
        ),
    )  # fmt: skip
