"""``dsa110ctl cal list|show|resolve``: the registry of calibration solutions.

Only parsing and printing; the work is in :mod:`dsa110d.operations.calibration`. Every
command takes ``--json``; whatever came from the state server is printed with control
characters removed (:func:`dsa110d.cli.common.printable`), as the other commands do.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import typer

from dsa110d.cli.common import ConfigOption, EnvOption, JsonOption, LimitOption, load, say
from dsa110d.cli.ctl_output import complete, print_json, table
from dsa110d.errors import BadRequestError
from dsa110d.operations import calibration

app = typer.Typer(
    name="cal",
    help="Calibration solutions: list them, show one, resolve what applies at a time.",
    no_args_is_help=True,
)

COLUMNS = ["solution", "kind", "status", "valid from (UTC)", "valid to (UTC)", "calibrator",
           "block", "v", "refant", "flagged", "SNR", "amp scatter", "phase scatter"]  # fmt: skip


def _row(s: dict[str, Any]) -> list[Any]:
    return [
        s["solution_id"], s["kind"], s["effective_status"], s["valid_from_utc"],
        s["valid_to_utc"], s["calibrator"] or "-", s["block_id"], s["block_version"],
        s["reference_antenna"], len(s["flagged_antennas"]), f"{s['snr_median']:.3g}",
        f"{s['amp_scatter']:.3g}", f"{s['phase_scatter_deg']:.3g} deg",
    ]  # fmt: skip


@app.command("list")
def list_command(
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", help="Only bandpass or gains.", autocompletion=complete(calibration.KINDS)
        ),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only solutions in this state (ok, poor, superseded).",
            autocompletion=complete(calibration.STATUSES),
        ),
    ] = None,
    limit: LimitOption = 50,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """Registered calibration solutions, newest first: validity, calibrator, block, QA."""
    if kind is not None and kind not in calibration.KINDS:
        raise typer.BadParameter(f"--kind: {kind!r} is not one of {', '.join(calibration.KINDS)}")
    if status is not None and status not in calibration.STATUSES:
        raise typer.BadParameter(
            f"--status: {status!r} is not one of {', '.join(calibration.STATUSES)}"
        )
    rows = anyio.run(calibration.list_solutions, load(config, env), kind, status, limit)
    if json_:
        print_json(rows)
        return
    if not rows:
        say("no calibration solutions" + (f" of kind {kind}" if kind else ""))
        return
    table("calibration solutions", COLUMNS, (_row(r) for r in rows))


@app.command("show")
def show_command(
    solution_id: Annotated[str, typer.Argument(help="The solution's id (see cal list).")],
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """Everything registered about one solution: QA, antennas, files, which run wrote it."""
    row = anyio.run(calibration.show_solution, load(config, env), solution_id)
    if json_:
        print_json(row)
        return
    for key, value in row.items():
        shown = ",".join(str(v) for v in value) if isinstance(value, list) else value
        say(f"{key:>20}: {'-' if shown in (None, '', []) else shown}")


@app.command("resolve")
def resolve_command(
    when: Annotated[
        str, typer.Argument(help="An MJD, an ISO 8601 UTC time or 'now'.", show_default=False)
    ] = "now",
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """What applies at a time: the newest valid bandpass and the gains covering it."""
    try:
        calibration.parse_time(when)
    except BadRequestError as exc:
        raise typer.BadParameter(str(exc)) from None
    found = anyio.run(calibration.resolve, load(config, env), when)
    if json_:
        print_json(found)
        return
    say(f"at {found['utc']} (MJD {found['mjd']:.6f}):")
    for kind in calibration.KINDS:
        solution = found[kind]
        if solution is None:
            say(f"  {kind:>8}: none valid")
        else:
            say(
                f"  {kind:>8}: {solution['solution_id']} (valid {solution['valid_from_utc']} to "
                f"{solution['valid_to_utc']}, calibrator {solution['calibrator'] or '-'}, "
                f"table {solution['table_path'] or solution['table']})"
            )
