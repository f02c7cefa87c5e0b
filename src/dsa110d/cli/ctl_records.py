"""``dsa110ctl sets | blocks | candidates``: what the pipeline recorded of its data.

Subband sets (the watchers), blocks (the processors) and the newest analysis run's
variable and transient candidates (the analyzer), from :mod:`dsa110d.operations.records`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Annotated, Any

import anyio
import typer

from dsa110d.cli.common import ConfigOption, EnvOption, JsonOption, LimitOption, load, say
from dsa110d.cli.ctl_output import PROGRAM, complete, number, print_json, table, utc
from dsa110d.operations import records
from dsa110d.state.monitored import Decoded

app = typer.Typer()


def _state_option(what: str, states: Sequence[str]) -> Any:
    return typer.Option(
        "--state",
        help=f"Only {what} in this state ({', '.join(states)}).",
        autocompletion=complete(states),
    )


SetStateOption = Annotated[str | None, _state_option("sets", records.SET_STATES)]
BlockStateOption = Annotated[str | None, _state_option("blocks", records.BLOCK_STATES)]


def _check_state(state: str | None, states: Sequence[str]) -> None:
    if state is not None and state not in states:
        raise typer.BadParameter(f"{state!r} is not one of {', '.join(states)}")


def _show(
    what: str,
    state: str | None,
    rows: Sequence[Any],
    json_: bool,
    columns: list[str],
    cells: Callable[[Any], list[Any]],
) -> None:
    """Records as JSON, or a table with one row each, or a line saying there are none."""
    if json_:
        print_json([r.to_dict() for r in rows])
    elif not rows:
        say(f"no {what}" + (f" in state {state}" if state else ""))
    else:
        table(what, columns, (cells(r) for r in rows))


@app.command("sets")
def sets_command(
    state: SetStateOption = None,
    limit: LimitOption = 50,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """Subband sets recorded by the watchers, oldest first.

    State, subbands present of expected, missing subbands, attempts, recorded faults."""
    _check_state(state, records.SET_STATES)
    _show(
        "sets", state, anyio.run(records.list_sets, load(config, env), state, limit), json_,
        ["set", "state", "subbands", "missing", "attempts", "faults", "last fault"],
        lambda r: [
            r.set_id, r.state, f"{r.subbands}/{r.expected}" + (" partial" if r.partial else ""),
            ",".join(f"{m:02d}" for m in r.missing) or "-", r.attempts, r.errors,
            r.last_error or "-",
        ],
    )  # fmt: skip


@app.command("blocks")
def blocks_command(
    state: BlockStateOption = None,
    limit: LimitOption = 50,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """Blocks (mosaics of chunks) recorded by the processors, oldest first.

    Span, state, version, chunks used, missing slots, whether newer chunks await a re-run,
    the last run's flagged fraction and bad antennas, attempts and the last error."""
    _check_state(state, records.BLOCK_STATES)
    _show(
        "blocks", state, anyio.run(records.list_blocks, load(config, env), state, limit), json_,
        ["block", "start (UTC)", "end (UTC)", "state", "version", "chunks", "missing",
         "re-run due", "flagged", "bad antennas", "attempts", "error"],
        lambda r: [
            r.block_id, utc(r.start), utc(r.end), r.state, r.version, r.chunks,
            ",".join(str(m) for m in r.missing_slots) or "-", "yes" if r.stale else "no",
            "-" if r.flag_fraction is None else f"{100 * r.flag_fraction:.1f}%",
            ",".join(r.bad_antennas) or "-", r.attempts, r.error or "-",
        ],
    )  # fmt: skip


@app.command("candidates")
def candidates_command(
    kind: Annotated[
        str | None,
        typer.Option(
            "--class",
            help="Only transient or variable candidates.",
            autocompletion=complete(records.CANDIDATE_CLASSES),
        ),
    ] = None,
    new: Annotated[
        bool,
        typer.Option(
            "--new",
            help="The blind search's new sources instead: first-detection block, the earlier "
            "mosaics' values and upper limits.",
        ),
    ] = False,
    limit: LimitOption = 50,
    env: EnvOption = None,
    config: ConfigOption = None,
    json_: JsonOption = False,
) -> None:
    """The variable and transient source candidates of the newest analysis run, best first
    (``--new``: the new sources the blind search found, now monitored)."""
    if kind is not None and kind not in records.CANDIDATE_CLASSES:
        raise typer.BadParameter(f"--class: {kind!r} is not transient or variable")
    if new:
        _new_sources(anyio.run(records.new_sources, load(config, env)), limit, json_)
        return
    report = anyio.run(records.latest_candidates, load(config, env), kind)
    if report is None:
        if json_:
            print_json(None)
        else:
            say("no candidates: no variability analysis has run yet")
        return
    shown = report.candidates[:limit] if limit else report.candidates
    if json_:
        print_json({**report.to_dict(), "candidates": shown})
        return
    run_time = report.run.get("run_time", "?")
    if not shown:
        say(f"no candidates in the run of {run_time}")
        return
    table(
        f"candidates of the run of {run_time} ({len(report.candidates)}; from {report.source})",
        ["rank", "source", "class", "by", "ra", "dec", "n", "mean Jy", "V", "eta", "q", "m"],
        (
            [c.get("rank"), c.get("source_id"), c.get("class"), c.get("variable_by") or "-",
             number(c.get("ra_deg"), 7), number(c.get("dec_deg"), 6), c.get("n"),
             number(c.get("mean_flux_jy")), number(c.get("v")), number(c.get("eta")),
             number(c.get("q_value")), number(c.get("m"))]
            for c in shown
        ),
    )  # fmt: skip


def _new_sources(decoded: Decoded[dict[str, Any]], limit: int, json_: bool) -> None:
    for bad in decoded.unreadable:
        say(f"{PROGRAM}: monitored source {bad.candidate_id!r} unreadable: {bad.reason}",
            file=sys.stderr)  # fmt: skip
    found = decoded.sources
    shown = found[:limit] if limit else found
    if json_:
        print_json({"new_sources": shown, "unreadable": [asdict(u) for u in decoded.unreadable]})
        return
    if not shown:
        say("no new sources: the blind search has found none (or the image stage is off)")
        return

    def earlier(r: dict[str, Any]) -> str:
        limits = r.get("earlier_upper_limits") or []
        if not limits:
            return "-"
        tightest = min(limits, key=lambda e: float(e["limit_jy"]))
        return f"{len(limits)} (< {number(tightest['limit_jy'])} Jy)"

    table(
        f"new sources ({len(found)}), first detected first",
        ["candidate", "ra", "dec", "first block", "peak Jy", "earlier limits", "re-run"],
        (
            [r.get("candidate_id"), number(r.get("ra_deg"), 7), number(r.get("dec_deg"), 6),
             r.get("first_block"), number(r.get("peak_jy")), earlier(r),
             ",".join(r.get("rerun_blocks") or []) or "-"]
            for r in shown
        ),
    )  # fmt: skip
