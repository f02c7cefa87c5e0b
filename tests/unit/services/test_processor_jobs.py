"""The processor's job results: they cross the worker boundary as JSON and come back typed,
and what the processor takes from a block run's stage results for its metrics."""

from __future__ import annotations

import json

import pytest

from dsa110d.services.processor_jobs import Converted, StageRun, flag_fraction

pytestmark = pytest.mark.unit


def test_a_conversion_result_round_trips_through_json() -> None:
    done = Converted("/data/ms/a.ms", False, 10.0, 319.2, 0.6, 4.5, (3, 7))
    doc = json.loads(json.dumps(done.to_json()))
    assert doc["missing_subbands"] == [3, 7]
    assert Converted.from_json(doc) == done


def test_a_stage_run_round_trips_through_json() -> None:
    run = StageRun("photometry", "ok", {"photometry": "p.parquet"}, {"sources": 4}, "")
    assert StageRun.from_json(json.loads(json.dumps(run.to_json()))) == run


def test_the_flag_fraction_comes_from_the_flag_stage() -> None:
    flag = {"stage": "flag", "summary": {"flagged_total": 10, "flag_fraction": 0.25}}
    photometry = {"stage": "photometry", "summary": {"flag_fraction": 0.9}}
    assert flag_fraction([photometry, flag]) == 0.25
    assert flag_fraction([photometry]) is None
    assert flag_fraction([{"stage": "flag", "summary": {"flagged_total": 0}}]) is None
