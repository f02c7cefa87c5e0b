"""The processor's job results cross the worker boundary as JSON and come back typed."""

from __future__ import annotations

import json

from dsa110d.services.processor_jobs import Converted, StageRun


def test_a_conversion_result_round_trips_through_json() -> None:
    done = Converted("/data/ms/a.ms", False, 10.0, 319.2, 0.6, 4.5, (3, 7))
    doc = json.loads(json.dumps(done.to_json()))
    assert doc["missing_subbands"] == [3, 7]
    assert Converted.from_json(doc) == done


def test_a_stage_run_round_trips_through_json() -> None:
    run = StageRun("photometry", "ok", {"photometry": "p.parquet"}, {"sources": 4}, "")
    assert StageRun.from_json(json.loads(json.dumps(run.to_json()))) == run
