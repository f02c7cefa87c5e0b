"""Message payload contracts: round trips, the paths each names, one-line refusals."""

from __future__ import annotations

from typing import Any

import pytest

from dsa110d.contracts import (
    AnalysisRun,
    BlockProcessed,
    ChunkConverted,
    RunStatus,
    SetAnnounced,
    ms_message,
)
from dsa110d.errors import MessageError

SET_ID = "2026-03-20T06:00:00"


def test_a_set_announcement_carries_its_files_once_in_subband_order() -> None:
    announced = SetAnnounced.of(SET_ID, {2: "/in/c", 0: "/in/a"}, 2461119.75, 0.6, 4, True)
    payload = announced.to_payload()
    assert payload["files"] == [{"subband": 0, "path": "/in/a"}, {"subband": 2, "path": "/in/c"}]
    assert "paths" not in payload
    assert payload["missing_subbands"] == [1, 3]
    assert SetAnnounced.from_payload(payload, "m1") == announced
    assert announced.paths() == ("/in/a", "/in/c")


def test_chunk_and_block_messages_round_trip_through_their_kind() -> None:
    chunk = ChunkConverted(SET_ID, SET_ID, "/data/ms/a.ms", 0.0, 309.0, 0.6, ("B1",))
    block = BlockProcessed(
        "B1", 2, {"photometry": "/data/results/p.parquet"}, ("/data/ms/a.ms",),
        (SET_ID,), (3,), 0.0, 3600.0,
    )  # fmt: skip
    assert ms_message(chunk.to_payload(), "m1") == chunk
    assert ms_message(block.to_payload(), "m2") == block
    assert chunk.paths() == ("/data/ms/a.ms",)
    assert block.paths() == ("/data/results/p.parquet", "/data/ms/a.ms")


def test_an_analysis_run_round_trips_with_its_status_typed() -> None:
    run = AnalysisRun(RunStatus.TIMEOUT, "2026-03-20T06:00:00Z", 1.5, error="slow")
    back = AnalysisRun.from_payload(run.to_payload(), "m3")
    assert back == run and back.status is RunStatus.TIMEOUT


@pytest.mark.parametrize(
    ("payload", "fault"),
    [
        ({"set_id": SET_ID}, "payload.files is missing"),
        ({"set_id": SET_ID, "files": ["/in/a"]}, "payload.files entries"),
        ({"set_id": "", "files": []}, "payload.set_id must be a non-empty string"),
    ],
)
def test_a_bad_set_announcement_is_one_line_naming_the_field(
    payload: dict[str, Any], fault: str
) -> None:
    with pytest.raises(MessageError, match=f"^message m9: {fault}") as caught:
        SetAnnounced.from_payload(payload, "m9")
    assert "\n" not in str(caught.value)


def test_a_bad_ms_message_is_refused_by_kind_and_field() -> None:
    with pytest.raises(MessageError, match=r"payload\.kind 'image' is not chunk/block"):
        ms_message({"kind": "image"}, "m9")
    block = BlockProcessed("B1", 1, {"photometry": "/p"}, (), (), (), 0.0, 1.0).to_payload()
    block["results"] = {"photometry": 7}
    with pytest.raises(MessageError, match=r"payload\.results must map kinds to paths"):
        ms_message(block, "m9")
    chunk = ChunkConverted(SET_ID, SET_ID, "/a.ms", 0.0, 1.0, 0.5).to_payload()
    chunk["start"] = float("nan")
    with pytest.raises(MessageError, match=r"payload\.start must be a finite number"):
        ms_message(chunk, "m9")
