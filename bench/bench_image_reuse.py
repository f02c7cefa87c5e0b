"""The block ``image`` stage with and without its chunk images reused (``science.imaging.reuse``).

``BENCH_REUSE_CHUNKS`` small-scale sets (default 2) are simulated and converted (not timed).
Then the whole stage (``pipeline.imaging.image_stage``: chunk images, the mosaic, Aegean, the
catalog match, the candidates, every output written) runs three times on the same MSs:

- **cold**: no chunk image made yet: every chunk imaged (the stage before this change, and a
  block's first run);
- **reused**: the same data and parameters again (a re-run, or a chunk the fast search imaged
  with the block's parameters): no chunk imaged;
- **shallow**: a shallower clean (``imaging.auto_threshold_sigma`` ``BENCH_REUSE_SHALLOW``,
  default 3, against the default 1): other parameters, so every chunk imaged again.

Wall and CPU seconds (this process and its children: wsclean) and the load average after each
run are written to ``bench/results/image_reuse.json`` (after one unreported warm-up run in
another results directory: the first run pays the imports). Small scale only: it is the ratio that
matters, the real-scale chunk image is ~500 CPU-s (``bench_imaging``).

Measured 2026-12-07 on the shared machine (2 cores, other sessions running), 768 x 4 arcsec:

| chunks, load average | run | wall | CPU | of it wsclean | chunks imaged | sources |
| --- | --- | --- | --- | --- | --- | --- |
| 2, 7.2 -> 7.7 (06:08) | cold | 20.7 s | 8.4 s | 2.82 s | 2 | 23 |
| | reused | 13.2 s | 6.8 s | 0.00 s | 0 | 23 (same mosaic rms) |
| | shallow (auto-threshold 3) | 22.0 s | 10.3 s | 2.64 s | 2 | 19 |
| 3, 4.6 -> 4.3 (06:18) | cold | 13.3 s | 12.4 s | 3.58 s | 3 | 4 |
| | reused | 9.0 s | 6.2 s | 0.00 s | 0 | 4 (same mosaic rms) |
| | shallow (auto-threshold 3) | 11.4 s | 9.9 s | 3.61 s | 3 | 2 |

Reuse took 32-36 % off the stage's wall time here, where the chunk images are a third of
the stage's CPU (the mosaic's reprojection and Aegean are the rest; the in-process CPU varies
by +-2 s between runs at this load, wsclean's, counted apart, does not). At real scale a
chunk image is ~485 CPU-s against ~18 CPU-s of beam correction and finder per chunk
(``bench_imaging``), so each reused chunk saves ~96 % of its share of the stage. The
shallower clean saved no wsclean CPU at this size (gridding dominates: 3.61 against 3.58 s)
and lost detections (19 of 23, 2 of 4: fainter sources left in the snapshot PSF,
``chunk.ImagingParams``): the default stays at 1 sigma. Whether a shallower clean pays at real
scale (clean is 9x the dirty image there) is to measure with ``bench_imaging``.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import report

START = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
IMAGE = {"size_px": 768, "scale_arcsec": 4.0}
"""The imaging acceptance test's small-scale image (4 arcsec: 5+ pixels across the beam)."""


def _load() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process, and of its children (wsclean)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _blocks(root: Path, chunks: int) -> tuple[list[Path], Path]:
    from dsa110d.science.catalog import write_catalog
    from dsa110d.science.simulation.simulate import SimulationSpec, simulate, sky_catalog
    from tests.helpers.imaging_kit import convert_chunks

    spec = SimulationSpec(
        out=root / "in", start=START, sets=chunks, scale="small", seed=11, corrupt="none",
        variable_fraction=0.0,
    )  # fmt: skip
    catalog = root / "catalog.csv"
    write_catalog(catalog, sky_catalog(spec))
    result = simulate(SimulationSpec(**{**spec.__dict__, "catalog": catalog}))
    return convert_chunks(list(result.files), root, chunks), catalog


def _stage(
    root: Path, results: str, catalog: Path, ms: list[Path], version: int, **imaging: Any
) -> dict[str, Any]:
    from dsa110d.config import Config, PathsConfig, ProcessorConfig
    from dsa110d.science.pipeline.blocks import BlockPlan
    from dsa110d.science.pipeline.imaging import image_stage
    from dsa110d.science.pipeline.stage import BlockJob

    paths = PathsConfig(
        incoming_dir=root / "incoming", ms_dir=root / "ms", results_dir=root / results,
        processed_dir=root / "processed", state_dir=root / "state", log_dir=root / "logs",
        catalog=catalog,
    )  # fmt: skip
    config = Config(env="testing", paths=paths)
    config = config.model_copy(
        update={"imaging": config.imaging.model_copy(update={**IMAGE, **imaging})}
    )
    job = BlockJob(BlockPlan.from_config(ProcessorConfig()).block(0), version)
    scratch = root / f"scratch-{results}-{version}"
    scratch.mkdir()
    began, (me, kids) = time.perf_counter(), _cpu()
    result = image_stage(job, ms, config, scratch)
    wall, (me_after, kids_after) = time.perf_counter() - began, _cpu()
    used, wsclean = me_after - me + kids_after - kids, kids_after - kids
    summary = dict(result.summary)
    figures = {
        "wall_s": round(wall, 2), "cpu_s": round(used, 2), "wsclean_cpu_s": round(wsclean, 2),
        "loadavg_after": _load(),
        "chunks_imaged": summary["chunks_imaged"], "sources": summary["sources"],
        "mosaic_rms_jy": summary["mosaic_rms_jy"],
    }  # fmt: skip
    print(version, figures, flush=True)
    return figures


def main() -> None:
    chunks = int(os.environ.get("BENCH_REUSE_CHUNKS", "2"))
    shallow = float(os.environ.get("BENCH_REUSE_SHALLOW", "3"))
    with tempfile.TemporaryDirectory(prefix="bench-reuse-") as tmp:
        root = Path(tmp)
        ms, catalog = _blocks(root, chunks)
        _stage(root, "warmup", catalog, ms, 1)  # imports and first-call costs, not reported
        load_before = _load()
        cold = _stage(root, "results", catalog, ms, 1)
        reused = _stage(root, "results", catalog, ms, 2)
        shallower = _stage(root, "results", catalog, ms, 3, auto_threshold_sigma=shallow)
    report(
        "image_reuse",
        {
            "chunks": chunks, "image": IMAGE, "loadavg_before": load_before,
            "cold": cold, "reused": reused, f"shallow_auto_threshold_{shallow:g}": shallower,
            "reused_over_cold_wall": round(reused["wall_s"] / cold["wall_s"], 3),
            "reused_over_cold_cpu": round(reused["cpu_s"] / cold["cpu_s"], 3),
            "shallow_over_cold_cpu": round(shallower["cpu_s"] / cold["cpu_s"], 3),
        },
    )  # fmt: skip


if __name__ == "__main__":
    main()
