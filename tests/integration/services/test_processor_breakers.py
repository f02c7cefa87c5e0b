"""The processor's circuit breaker around an external program: the real wsclean, failing on a
block whose Measurement Sets it cannot open, fails the image stage until its breaker opens;
then the stage is skipped at once (no worker, no wsclean) with the reason, the processor is
degraded, and after the reset timeout one probe runs wsclean again."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from dsa110d.config import Config
from dsa110d.errors import StageError
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.state.connection import Redis
from tests.conftest import make_config
from tests.helpers.testms import START_MJD_S, SkyModel, make_ms
from tests.integration.services.processorkit import BLOCK_SETTINGS, FIRST_BLOCK, worker_pool

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
FAILURE_THRESHOLD = 2
RESET_TIMEOUT_SEC = 1.0


def _failing_wsclean(bin_dir: Path) -> None:
    """A ``wsclean`` that fails as a crashing one does (non-zero exit, a reason on stderr): the
    breaker, not wsclean, is under test, and the image stage reads the MS before wsclean."""
    bin_dir.mkdir()
    program = bin_dir / "wsclean"
    program.write_text("#!/bin/sh\necho 'cannot open the measurement set' >&2\nexit 1\n")
    program.chmod(0o755)


async def test_a_failing_wsclean_opens_its_breaker_and_image_is_skipped_until_a_probe(
    tmp_path: Path,
    server_url: str,
    config: Config,
    redis: Redis,
) -> None:
    cfg = make_config(
        tmp_path, server_url, redis__namespace=config.redis.namespace, **BLOCK_SETTINGS,
        pipeline__stages="[image]", breakers__failure_threshold=FAILURE_THRESHOLD,
        imaging__wsclean=str(tmp_path / "bin" / "wsclean"),
        breakers__reset_timeout_sec=RESET_TIMEOUT_SEC,
    )  # fmt: skip
    _failing_wsclean(tmp_path / "bin")
    (tmp_path / "ms").mkdir(exist_ok=True)
    sky = SkyModel(np.array([100.0]), np.array([37.0]), np.array([1.0]))
    chunk = make_ms(
        tmp_path / "ms" / "chunk.ms", sky,
        mid_time_mjd_s=START_MJD_S, phase_ra_deg=100.0, dec_deg=37.0, n_ant=6, n_chan=8,
    )  # fmt: skip
    chunk_ms = [str(chunk)]
    stages_run: list[list[str]] = []
    async with worker_pool(1) as pool:

        async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
            stages_run.append(inspect.signature(func).bind(*args, **kwargs).arguments["stages"])
            return await pool.run(func, *args, **kwargs)

        handler = MSProcessingHandler(cfg, redis, counted)
        config_doc = cfg.model_dump(mode="json", exclude={"redis"})

        async def run_image() -> list[dict[str, Any]]:
            staging = tmp_path / "staging"
            done: list[dict[str, Any]] = await handler.run_stages(
                config_doc, FIRST_BLOCK, 1, (), chunk_ms, staging
            )
            return done

        for _ in range(FAILURE_THRESHOLD):
            with pytest.raises(StageError, match="wsclean failed"):
                await run_image()
        assert handler.breakers.trouble("processor").startswith("circuit 'wsclean' open")

        stages_run.clear()
        results = await run_image()  # refused at once: wsclean is not run
        assert stages_run == []
        [image] = results
        assert (image["stage"], image["status"]) == ("image", "skipped")
        assert "circuit 'wsclean' is open" in image["message"]

        await anyio.sleep(RESET_TIMEOUT_SEC)
        stages_run.clear()
        with pytest.raises(StageError, match="wsclean failed"):  # the half-open probe
            await run_image()
        assert stages_run == [["image"]]
        assert handler.breakers.trouble("processor").startswith("circuit 'wsclean' open")
