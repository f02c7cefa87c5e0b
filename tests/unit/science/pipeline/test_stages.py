"""The stage registry, pipeline building from config, and the image stage with/without wsclean."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from astropy.io import fits

from dsa110d.config import Config, ProcessorConfig
from dsa110d.errors import ConfigError
from dsa110d.science.imaging.chunk import wcs_of
from dsa110d.science.imaging.finder import SOURCE_COLUMNS
from dsa110d.science.pipeline.blocks import BlockPlan
from dsa110d.science.pipeline.imaging import image_stage
from dsa110d.science.pipeline.stage import BlockJob, StageResult
from dsa110d.science.pipeline.stages import build_pipeline, registry, run_pipeline
from tests.helpers.testms import SimBlock

JOB = BlockJob(BlockPlan.from_config(ProcessorConfig()).block(0))


def _with_stages(config: Config, stages: list[str]) -> Config:
    return config.model_copy(
        update={"pipeline": config.pipeline.model_copy(update={"stages": stages})}
    )


def test_builtins_are_registered() -> None:
    assert {"flag", "photometry", "image"} <= set(registry())


def test_pipeline_follows_the_configured_order(config: Config) -> None:
    names = [name for name, _ in build_pipeline(_with_stages(config, ["photometry", "flag"]))]
    assert names == ["photometry", "flag"]


def test_unknown_stage_is_a_one_line_config_error(config: Config) -> None:
    with pytest.raises(ConfigError, match=r"pipeline.stages\[1\]: unknown stage 'smooth'") as info:
        build_pipeline(_with_stages(config, ["flag", "smooth"]))
    assert "\n" not in str(info.value)


def test_run_pipeline_gives_each_stage_a_scratch_dir(config: Config, tmp_path: Path) -> None:
    seen: list[Path] = []

    def probe(job: BlockJob, ms_paths: object, config: Config, scratch: Path) -> StageResult:
        seen.append(scratch)
        return StageResult("probe", "ok")

    results = run_pipeline([("probe", probe)], JOB, [], config, tmp_path)
    assert [r.status for r in results] == ["ok"] and seen[0].is_dir()


def test_a_mostly_flagged_block_is_not_measured(config: Config, tmp_path: Path) -> None:
    ran: list[str] = []

    def flag(job: BlockJob, ms_paths: object, config: Config, scratch: Path) -> StageResult:
        ran.append("flag")
        return StageResult("flag", "ok", summary={"status": "mostly_flagged"})

    def photometry(job: BlockJob, ms_paths: object, config: Config, scratch: Path) -> StageResult:
        ran.append("photometry")
        return StageResult("photometry", "ok")

    pipeline = [("flag", flag), ("photometry", photometry)]
    results = run_pipeline(pipeline, JOB, [], config, tmp_path)
    assert ran == ["flag"]
    assert [(r.stage, r.status) for r in results] == [("flag", "ok"), ("photometry", "skipped")]
    assert "mostly flagged" in results[1].message


def test_image_is_skipped_without_wsclean(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH holding no wsclean
    result = image_stage(JOB, [], config, tmp_path)
    assert result.status == "skipped" and "wsclean" in result.message


# wsclean comes from `make test-deps`: without it this test fails rather than skips.
@pytest.mark.timeout(300)
def test_image_with_wsclean_writes_chunks_mosaic_maps_and_sources(
    config: Config, sim_block: SimBlock, tmp_path: Path
) -> None:
    """Two chunks: each imaged on its own (Stokes I, full WCS, beam in the header), one
    mosaic with rms and beam maps on one grid, a PNG and the source list."""
    small = config.imaging.model_copy(update={"size_px": 128, "scale_arcsec": 20.0, "niter": 50})
    config = config.model_copy(update={"imaging": small})
    started = time.monotonic()
    result = image_stage(JOB, sim_block.ms_paths[:2], config, tmp_path)
    assert result.status == "ok" and result.summary["chunks"] == 2
    for kind in ("chunk00", "chunk01", "mosaic", "rms", "pb"):
        header = fits.getheader(result.outputs[kind])
        wcs = wcs_of(header).celestial
        assert wcs.wcs.ctype[0].startswith("RA---") and wcs.wcs.ctype[1].startswith("DEC--")
        if kind != "pb":
            assert header["BMAJ"] > 0 and header["BMIN"] > 0 and "BPA" in header
    assert fits.getheader(result.outputs["chunk00"])["CRVAL4"] == 1  # Stokes I
    mosaic = fits.getdata(result.outputs["mosaic"])
    assert mosaic.shape == fits.getdata(result.outputs["rms"]).shape
    assert Path(result.outputs["quicklook"]).read_bytes()[:4] == b"\x89PNG"
    sources = pd.read_parquet(result.outputs["sources"])
    assert set(SOURCE_COLUMNS) == set(sources.columns)
    assert "earlier_upper_limits" in pd.read_parquet(result.outputs["candidates"]).columns
    print(f"image stage on two small MSs: {time.monotonic() - started:.1f} s")


def _install_plugin(root: Path, monkeypatch: pytest.MonkeyPatch, entries: str) -> None:
    """A real installed distribution (dist-info on sys.path) declaring dsa110d.stages."""
    (root / "dsa110d_fake_stage.py").write_text(
        "from dsa110d.science.pipeline.stages import StageResult\n"
        "def fake(job, ms_paths, config, scratch):\n"
        "    return StageResult('fake', 'ok', summary={'n_ms': len(ms_paths)})\n"
    )
    info = root / "dsa110d_fake_stage-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dsa110d-fake-stage\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[dsa110d.stages]\n{entries}\n")
    monkeypatch.syspath_prepend(str(root))


def test_third_party_stages_come_from_entry_points(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(tmp_path, monkeypatch, "fake = dsa110d_fake_stage:fake")
    pipeline = build_pipeline(_with_stages(config, ["fake"]))
    (result,) = run_pipeline(pipeline, JOB, [], config, tmp_path / "scratch")
    assert result.stage == "fake" and result.summary == {"n_ms": 0}


def test_a_plugin_cannot_replace_a_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_plugin(tmp_path, monkeypatch, "flag = dsa110d_fake_stage:fake")
    from dsa110d.science.pipeline.rfi import flag_stage

    assert registry()["flag"] is flag_stage


@pytest.fixture
def config(science_config: Config) -> Config:
    """This module's stages need a Config but no server."""
    return science_config
