"""What the processor takes from a block run's stage results for its metrics."""

from __future__ import annotations

import pytest

from dsa110d.services.processor_jobs import flag_fraction

pytestmark = pytest.mark.unit


def test_the_flag_fraction_comes_from_the_flag_stage() -> None:
    flag = {"stage": "flag", "summary": {"flagged_total": 10, "flag_fraction": 0.25}}
    photometry = {"stage": "photometry", "summary": {"flag_fraction": 0.9}}
    assert flag_fraction([photometry, flag]) == 0.25
    assert flag_fraction([photometry]) is None
    assert flag_fraction([{"stage": "flag", "summary": {"flagged_total": 0}}]) is None
