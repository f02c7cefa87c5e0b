"""The calibration alert rules: no valid bandpass, degraded gain QA, from the summary a
processor reports in its registry entry; both held for alerts.degraded_for_min."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dsa110d.alerts import rules
from dsa110d.config import Config
from dsa110d.state.registry import RegistryEntry
from tests.conftest import make_config

GOOD = {"bandpass_valid": True, "bandpass_age_sec": 3600.0, "bandpass_id": "bp",
        "gains_id": "g", "gains_status": "ok", "gains_amp_scatter": 0.02,
        "gains_phase_scatter_deg": 2.0, "gains_qa_ok": True}  # fmt: skip


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_config(tmp_path)


def processor(calibration: dict[str, Any] | None, host: str = "obs1") -> RegistryEntry:
    metrics = {"calibration": calibration} if calibration is not None else {}
    return RegistryEntry(host, 42, "processor", "HEALTHY", "", "t0", "1", metrics=metrics)


def test_a_good_calibration_or_none_at_all_raises_nothing(cfg: Config) -> None:
    assert rules.calibration_conditions([processor(GOOD)], cfg) == []
    assert rules.calibration_conditions([processor(None)], cfg) == []


def test_no_valid_bandpass_and_poor_gains_are_alerts(cfg: Config) -> None:
    bad = {**GOOD, "bandpass_valid": False, "bandpass_age_sec": 2.5 * 86400,
           "gains_qa_ok": False, "gains_amp_scatter": 0.4}  # fmt: skip
    # two processors report the same shared registry: one alert each, not two
    found = rules.calibration_conditions([processor(bad), processor(bad, "obs2")], cfg)
    by_rule = {c.rule: c for c in found}
    assert sorted(by_rule) == ["gain_qa_degraded", "no_valid_bandpass"] and len(found) == 2
    assert "2.5 days" in by_rule["no_valid_bandpass"].summary
    assert "amplitude scatter 0.4" in by_rule["gain_qa_degraded"].summary
    assert {c.hold_sec for c in found} == {cfg.alerts.degraded_for_min * 60}
    assert {c.fingerprint for c in found} == {
        "calibration:no-valid-bandpass",
        "calibration:gain-qa",
    }
