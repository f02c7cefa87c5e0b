"""The public plugin API: its names are pinned, its types checked (mypy covers this file),
and the stage and service examples of docs/plugins.md run as written."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import assert_type

import pytest

import dsa110d.plugins as plugins
from dsa110d.config import Config
from dsa110d.plugins import (
    BlockJob,
    HealthReport,
    Service,
    ServiceContext,
    Stage,
    StageResult,
    register_service,
)
from dsa110d.science.pipeline.blocks import Block
from dsa110d.services import base

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
PUBLIC = {
    "SERVICE_MODULES_VAR",
    "STAGE_ENTRY_POINT_GROUP",
    "BlockJob",
    "Health",
    "HealthReport",
    "Service",
    "ServiceContext",
    "Stage",
    "StageResult",
    "SummaryValue",
    "register_service",
    "registered_services",
    "stage_registry",
}


def test_the_public_names_are_pinned_and_importable() -> None:
    assert set(plugins.__all__) == PUBLIC
    assert all(hasattr(plugins, name) for name in plugins.__all__)
    assert plugins.STAGE_ENTRY_POINT_GROUP == "dsa110d.stages"
    assert plugins.SERVICE_MODULES_VAR == "DSA110_SERVICE_MODULES"
    assert {"flag", "photometry", "image"} <= set(plugins.stage_registry())


def typed_stage(
    job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
) -> StageResult:
    return StageResult("typed", "skipped", message=f"{job.block_id}: {len(ms_paths)} MSs")


def test_a_function_with_the_stage_signature_is_a_stage(tmp_path: Path) -> None:
    stage: Stage = typed_stage  # mypy checks the Protocol here
    job = BlockJob(Block(0, 0, 1, 12, 300.0))
    result = stage(job, [], Config(), tmp_path)
    assert_type(result, StageResult)
    assert result.status == "skipped" and result.message.endswith("0 MSs")


class Idle(Service):
    async def run(self, ctx: ServiceContext) -> None:
        while await ctx.take_work():
            await ctx.sleep(0.01)


def test_register_service_returns_the_class_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_SERVICES", dict(base._SERVICES))
    registered = register_service("idle-test")(Idle)
    assert_type(registered, type[Idle])
    assert registered is Idle and Idle.name == "idle-test"
    assert "idle-test" in plugins.registered_services()
    assert Idle().health() == HealthReport.healthy()


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_documented_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_SERVICES", dict(base._SERVICES))
    stage_code, service_code = _examples()
    scope: dict[str, object] = {}
    exec(compile(stage_code, str(DOC), "exec"), scope)
    exec(compile(service_code, str(DOC), "exec"), scope)
    ms_count = scope["ms_count"]
    assert callable(ms_count)
    job = BlockJob(Block(0, 0, 1, 12, 300.0))
    result = ms_count(job, [tmp_path / "a.ms"], Config(), tmp_path)
    assert isinstance(result, StageResult) and result.summary["measurement_sets"] == 1
    assert base.service_class("ticker") is scope["Ticker"]
