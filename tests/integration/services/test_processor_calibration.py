"""The processor registers the calibration solutions a block run wrote, in the block's fenced
commit (once; never from a stale holder; a sidecar that breaks the contract fails the run),
and reports DEGRADED when calibrated data has gone on for calibration.max_days_without_bandpass
days without a valid bandpass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dsa110d.config import Config
from dsa110d.errors import FencingError, StateError
from dsa110d.metrics import ServiceMetrics
from dsa110d.science.pipeline.blocks import BlockPlan, Chunk
from dsa110d.services.base import Health
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.services.processor_service import MSProcessorService
from dsa110d.state.calibration import unix_to_mjd
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Lease
from tests.conftest import make_config
from tests.helpers.calrecords import sidecar, stage_sidecar

pytestmark = pytest.mark.anyio

DAY0 = 1773964800.0  # 2026-03-20T00:00 UTC
CALIBRATED = {"calibrate": {"cal_status": "ok", "cal_bandpass_id": None, "cal_gains_id": None}}


def _published(cfg: Config, kind: str) -> list[Path]:
    folder = cfg.paths.results_dir / "cal" / kind
    return sorted(folder.iterdir()) if folder.exists() else []


async def _refuse(*_: Any) -> Any:
    raise AssertionError("no worker job in these tests")


@pytest.fixture
def cfg(tmp_path: Path, server_url: str) -> Config:
    return make_config(tmp_path, server_url, calibration__max_days_without_bandpass=1)


@pytest.fixture
async def handler(cfg: Config, redis: Redis) -> MSProcessingHandler:
    made = MSProcessingHandler(cfg, redis, _refuse)
    await made.start()
    return made


def _block_at(cfg: Config, stamp: float) -> tuple[str, float]:
    block = BlockPlan.from_config(cfg.services.ms_processor).blocks_of_chunk(
        Chunk(stamp, stamp + 300, "/ms/x.ms")
    )[0]
    return block.id, block.start


async def _run(
    handler: MSProcessingHandler,
    block_id: str,
    docs: list[dict[str, Any]],
    lease: Lease | None = None,
    qa: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Stage the sidecars (and tables) a calibrate stage wrote and publish the run."""
    lease = lease or await handler.leases.acquire(Keys.block_lease(block_id))
    assert lease is not None
    staging = handler.config.paths.results_dir / ".staging" / f"{block_id}.v1.t{lease.token}"
    outputs = {}
    for doc in docs:
        relative = stage_sidecar(staging, doc)
        outputs[f"calibrate.cal_{doc['kind']}"] = relative
        outputs[f"calibrate.cal_{doc['kind']}_table"] = str(Path(relative).parent / doc["table"])
    return await handler.publish_run(
        lease, block_id, 1, 1, [block_id], (), staging, outputs, CALIBRATED if qa is None else qa
    )


async def test_a_run_registers_its_solutions_with_their_published_tables(
    cfg: Config, handler: MSProcessingHandler
) -> None:
    block_id, start = _block_at(cfg, DAY0 + 6 * 3600)
    mjd = unix_to_mjd(start)
    docs = [sidecar("bp-1", "bandpass", mjd, block_id=block_id),
            sidecar("g-1", "gains", mjd, block_id=block_id)]  # fmt: skip
    results = await _run(handler, block_id, docs)
    for doc in docs:
        stored = await handler.calibrations.solution(doc["solution_id"])
        assert stored is not None and stored.valid
        assert stored.path == results[f"calibrate.cal_{doc['kind']}"]
        assert json.loads(Path(stored.path).read_text()) == doc  # the published sidecar
        assert stored.table_path == results[f"calibrate.cal_{doc['kind']}_table"]
        assert (Path(stored.table_path) / "table.dat").is_file()
    resolved = await handler.calibrations.resolve(mjd + 0.01)
    assert resolved.bandpass is not None and resolved.bandpass.solution_id == "bp-1"
    assert resolved.gains is not None and resolved.gains.solution_id == "g-1"
    block = BlockPlan.from_config(cfg.services.ms_processor).block_by_id(block_id)
    span = (unix_to_mjd(block.start), unix_to_mjd(block.end))
    assert await handler.calibrations.coverage() == span


async def test_a_stale_holder_registers_nothing_and_takes_its_files_back(
    cfg: Config, handler: MSProcessingHandler, redis: Redis
) -> None:
    block_id, start = _block_at(cfg, DAY0 + 6 * 3600)
    name = Keys.block_lease(block_id)
    paused = await handler.leases.acquire(name)
    assert paused is not None
    await redis.delete(handler.keys.lease(name))  # its TTL ran out while it was paused
    assert await handler.leases.acquire(name) is not None  # a newer holder
    doc = sidecar("g-stale", "gains", unix_to_mjd(start), block_id=block_id)
    with pytest.raises(FencingError):
        await _run(handler, block_id, [doc], lease=paused)
    assert await handler.calibrations.solution("g-stale") is None
    assert await handler.calibrations.coverage() is None
    assert _published(cfg, "gains") == []


async def test_a_sidecar_breaking_the_contract_fails_the_run(
    cfg: Config, handler: MSProcessingHandler
) -> None:
    block_id, start = _block_at(cfg, DAY0 + 6 * 3600)
    doc = sidecar("g-bad", "gains", unix_to_mjd(start), block_id=block_id)
    doc["amp_scatter"] = "large"
    lease = await handler.leases.acquire(Keys.block_lease(block_id))
    with pytest.raises(StateError, match="amp_scatter"):
        await _run(handler, block_id, [doc], lease)
    assert await handler.blocks.block(block_id) is None  # nothing committed
    assert _published(cfg, "gains") == []
    other = sidecar("g-other", "gains", unix_to_mjd(start), block_id="2026-03-20T05:00:00")
    with pytest.raises(StateError, match="written for block 2026-03-20T05:00:00 v1"):
        await _run(handler, block_id, [other], lease)
    assert await handler.calibrations.solution("g-other") is None


async def test_the_processor_is_degraded_after_days_of_data_without_a_bandpass(
    cfg: Config, handler: MSProcessingHandler
) -> None:
    service = MSProcessorService()
    service.handler, service.cal_config = handler, cfg.calibration
    service.calibrating = True  # "calibrate" in pipeline.stages
    metrics = ServiceMetrics()
    await service.refresh_calibration(metrics)
    assert metrics.calibration is None and service.health().health is Health.HEALTHY

    first, _ = _block_at(cfg, DAY0 + 6 * 3600)
    await _run(handler, first, [])  # calibrated without a calibrator: no solution yet
    await service.refresh_calibration(metrics)
    assert service.health().health is Health.HEALTHY  # under a day of data so far
    later, later_start = _block_at(cfg, DAY0 + 36 * 3600)
    await _run(handler, later, [])
    await service.refresh_calibration(metrics)
    report = service.health()
    assert report.health is Health.DEGRADED and "no valid bandpass" in report.reason
    service.calibrating = False  # the operator took calibrate out of the pipeline
    await service.refresh_calibration(metrics)
    assert service.health().health is Health.HEALTHY and metrics.calibration is None
    service.calibrating = True
    await service.refresh_calibration(metrics)
    assert metrics.calibration is not None and metrics.calibration["bandpass_valid"] is False
    assert metrics.calibration["bandpass_age_sec"] > 86400

    # a poor bandpass does not end it; an ok one does
    mjd = unix_to_mjd(later_start)
    other, _ = _block_at(cfg, DAY0 + 37 * 3600)
    poor = sidecar("bp-poor", "bandpass", mjd, block_id=other, status="poor")
    await _run(handler, other, [poor])
    await service.refresh_calibration(metrics)
    assert service.health().health is Health.DEGRADED
    last, _ = _block_at(cfg, DAY0 + 38 * 3600)
    good = sidecar("bp-ok", "bandpass", mjd, block_id=last)
    gains = sidecar("g-ok", "gains", mjd + 0.05, block_id=last, phase_scatter_deg=25.0)
    await _run(handler, last, [good, gains])
    await service.refresh_calibration(metrics)
    assert service.health().health is Health.HEALTHY
    assert metrics.calibration["bandpass_valid"] is True
    assert metrics.calibration["bandpass_id"] == "bp-ok"
    assert metrics.calibration["gains_qa_ok"] is False  # 25 deg > gain_phase_scatter_max_deg


def _write_real(staging: Path, block_id: str, version: int, start_mjd: float) -> dict[str, str]:
    """A bandpass as the calibrate stage writes it (a real CASA table and its record, by
    ``caltables.write_solution`` under the run's staging directory) and the stage's outputs
    for it, relative to the staging directory as the worker reports them."""
    import numpy as np

    from dsa110d.science.calibration import caltables

    shape = (1, 3, 4, 2)
    solution = caltables.Solution(
        "bandpass", np.array([start_mjd * 86400.0]), np.array([300.0]), np.array([0, 1, 2]),
        np.linspace(1.3e9, 1.5e9, 4), np.full(shape, 1.0 + 0.5j), np.full(shape, 0.01),
        np.full(shape, 50.0), np.zeros(shape, bool), 1,
    )  # fmt: skip
    doc = sidecar("bandpass-real", "bandpass", start_mjd, block_id=block_id,
                  block_version=version)  # fmt: skip
    record = caltables.SolutionRecord.from_json(doc)
    written = caltables.write_solution(staging, record, solution, staging / "no-ms.ms")
    return {
        f"calibrate.{name}": str(Path(path).relative_to(staging))
        for name, path in caltables.outputs("bandpass", written).items()
    }


async def test_the_stages_tables_are_published_fenced_and_never_by_a_stale_holder(
    cfg: Config, handler: MSProcessingHandler, redis: Redis
) -> None:
    """The calibrate stage writes its tables in the run's staging directory and lists them
    among its outputs: a stale holder publishes no table; the holder that commits publishes
    it under a fenced name; a re-run publishes a new one and leaves the first as it was."""
    block_id, start = _block_at(cfg, DAY0 + 6 * 3600)
    mjd = unix_to_mjd(start)
    name = Keys.block_lease(block_id)
    results = cfg.paths.results_dir
    paused = await handler.leases.acquire(name)
    assert paused is not None
    await redis.delete(handler.keys.lease(name))  # its TTL ran out while it was paused
    live = await handler.leases.acquire(name)
    assert live is not None

    def staging_of(lease: Lease, version: int) -> Path:
        return results / ".staging" / f"{block_id}.v{version}.t{lease.token}"

    stale_outputs = _write_real(staging_of(paused, 1), block_id, 1, mjd)
    with pytest.raises(FencingError):
        await handler.publish_run(paused, block_id, 1, 1, [block_id], (),
                                  staging_of(paused, 1), stale_outputs, CALIBRATED)  # fmt: skip
    assert _published(cfg, "bandpass") == []  # neither the record nor the table

    outputs = _write_real(staging_of(live, 1), block_id, 1, mjd)
    published = await handler.publish_run(
        live, block_id, 1, 1, [block_id], (), staging_of(live, 1), outputs, CALIBRATED
    )
    table = Path(published["calibrate.cal_bandpass_table"])
    assert table.name == f"bandpass-real.v1.t{live.token}.tab"
    assert (table / "table.dat").is_file()
    stored = await handler.calibrations.solution("bandpass-real")
    assert stored is not None and stored.table_path == str(table)
    before = {p.name: p.stat().st_mtime_ns for p in table.iterdir() if p.is_file()}

    await handler.leases.release(live)
    rerun = await handler.leases.acquire(name)
    assert rerun is not None
    again = _write_real(staging_of(rerun, 2), block_id, 2, mjd)
    republished = await handler.publish_run(
        rerun, block_id, 2, 1, [block_id], (), staging_of(rerun, 2), again, CALIBRATED
    )
    second = Path(republished["calibrate.cal_bandpass_table"])
    assert second != table and second.name == f"bandpass-real.v2.t{rerun.token}.tab"
    kept = [p for p in _published(cfg, "bandpass") if p.suffix == ".tab"]
    assert second in kept
    if table in kept:  # superseded files may be swept; never rewritten in place
        assert {p.name: p.stat().st_mtime_ns for p in table.iterdir() if p.is_file()} == before
