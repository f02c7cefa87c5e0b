"""The calibration registry's pure parts: the sidecar contract checked field by field, the
effective status, and the data-time age of the newest valid bandpass."""

from __future__ import annotations

from typing import Any

import pytest

from dsa110d.errors import StateError
from dsa110d.state.calibration import CalibrationSummary, CalSolution
from tests.helpers.calrecords import DAY0_MJD, sidecar, solution


def test_a_complete_sidecar_is_read_as_written() -> None:
    doc = sidecar("bp-1", "bandpass", DAY0_MJD, calibrator="3C286")
    read = CalSolution.from_sidecar(doc, "/r/cal/bandpass/bp-1.json")
    shown = read.to_dict()
    assert {k: shown[k] for k in doc} == doc
    assert read.valid and read.effective_status == "ok" and read.covers(DAY0_MJD + 1)
    assert not read.covers(DAY0_MJD + 3.01)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"solution_id": "../etc"}, "solution_id"),
        ({"kind": "phase"}, "kind"),
        ({"status": "uncalibrated"}, "status"),
        ({"amp_scatter": "large"}, "amp_scatter"),
        ({"snr_median": float("nan")}, "snr_median"),
        ({"block_version": True}, "block_version"),
        ({"flagged_antennas": [1, "2"]}, "flagged_antennas"),
        ({"set_ids": [3]}, "set_ids"),
        ({"calibrator": 286}, "calibrator"),
        ({"valid_to_mjd": DAY0_MJD - 1}, "valid_to_mjd"),
        ({"table": None}, "table"),
    ],
)
def test_a_sidecar_breaking_the_contract_is_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(StateError, match=field):
        CalSolution.from_sidecar({**sidecar("g-1"), **change})


def test_a_missing_field_is_named() -> None:
    doc = sidecar("g-1")
    del doc["reference_antenna"]
    with pytest.raises(StateError, match="reference_antenna"):
        CalSolution.from_sidecar(doc)


def test_superseded_and_poor_solutions_are_not_valid() -> None:
    assert not solution("g", status="poor").valid
    superseded = CalSolution(**{**solution("g").__dict__, "superseded_by": "g2"})
    assert not superseded.valid and superseded.effective_status == "superseded"


def _summary(bandpass: CalSolution | None, first: float, last: float) -> CalibrationSummary:
    return CalibrationSummary({}, first, last, bandpass, None, False)


def test_the_bandpass_age_is_counted_in_data_time() -> None:
    bandpass = solution("bp", "bandpass", DAY0_MJD + 1.0)
    assert _summary(bandpass, DAY0_MJD, DAY0_MJD + 3.5).bandpass_age_days == pytest.approx(2.5)
    # none ever: the whole span of calibrated data
    assert _summary(None, DAY0_MJD, DAY0_MJD + 3.5).bandpass_age_days == pytest.approx(3.5)
    # no calibrate stage has run: no age at all
    assert CalibrationSummary({}, None, None, None, None, False).bandpass_age_days is None
    metrics = _summary(bandpass, DAY0_MJD, DAY0_MJD + 1.5).to_metrics()
    assert metrics["bandpass_age_sec"] == pytest.approx(0.5 * 86400)
    assert metrics["gains_amp_scatter"] is None
