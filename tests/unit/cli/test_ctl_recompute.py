"""``dsa110ctl recompute`` parses its options and prints what the request means."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from typer.testing import CliRunner

from dsa110d.cli import ctl, ctl_analysis
from dsa110d.operations.analysis import RecomputeRequest

NOW = 1795708000.0


def request(**fields: Any) -> RecomputeRequest:
    return replace(RecomputeRequest(NOW, 0, 0, None, None), **fields)


def test_no_analyzer_and_no_run_yet() -> None:
    assert ctl_analysis.recompute_lines(request(), NOW) == [
        "full recompute requested at 2026-11-26T15:46:40+00:00: "
        "no analyzer is running: the first to start runs it",
        "last run: none yet",
    ]


def test_running_analyzers_noted_blocks_and_the_last_run() -> None:
    lines = ctl_analysis.recompute_lines(
        request(analyzers=2, pending_blocks=5, last_finished=NOW - 125, last_status="timeout"),
        NOW,
    )
    assert lines[0].endswith(": the next analyzer to look runs it (2 running)")
    assert lines[1:] == ["the run also takes 5 noted blocks", "last run: timeout, 2m05s ago"]


def test_json_is_every_field() -> None:
    assert request(analyzers=1).to_dict() == {
        "requested_at": NOW,
        "analyzers": 1,
        "pending_blocks": 0,
        "last_finished": None,
        "last_status": None,
    }


def test_options_and_usage_errors() -> None:
    runner = CliRunner()
    helped = runner.invoke(ctl.app, ["recompute", "--help"])
    assert helped.exit_code == 0
    assert all(o in helped.output for o in ("--json", "--env", "--config"))
    assert runner.invoke(ctl.app, ["recompute", "stray"]).exit_code == 2
    assert runner.invoke(ctl.app, ["recompute", "--jsn"]).exit_code == 2
