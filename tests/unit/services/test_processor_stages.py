"""How the processor cuts the configured stages into worker calls: each stage that runs an
external program on its own (behind that program's circuit breaker), the others together."""

from __future__ import annotations

from dsa110d.services.processor_jobs import stage_segments


def test_in_process_stages_run_together_and_an_external_program_alone() -> None:
    assert stage_segments(["flag", "photometry"]) == [(["flag", "photometry"], None)]
    assert stage_segments(["flag", "image", "photometry", "mine"]) == [
        (["flag"], None),
        (["image"], "wsclean"),
        (["photometry", "mine"], None),
    ]
    assert stage_segments(["image", "image"]) == [(["image"], "wsclean"), (["image"], "wsclean")]
    assert stage_segments([]) == []
