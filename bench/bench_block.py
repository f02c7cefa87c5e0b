"""Processing of one block: flag + photometry of 13 real-scale chunks with a 1,000-source catalog.

Real-scale chunks (96 antennas, 4656 baselines, 768 channels, 2 polarisations, 24
integrations) are built directly with python-casacore (noise only: the cost of flagging and
photometry does not depend on the visibility values). One chunk is built and measured; a block
is 13 chunks, so the block figure is 13 times the chunk's (every chunk costs the same), except
for flagging: the flag stage flags a block's chunks in parallel (one per core), so copies of
the chunk, one per core, are flagged together by the stage and a block's flagging counts
ceil(13 / cores) such rounds.
Two catalogs: 1,000 sources over the whole 24 h strip at the pointing declination (realistic:
a few dozen in the beam in a given hour), and 1,000 sources all inside the block's beam (worst
case; measured with IN_BEAM_SOURCES in one chunk, scaled linearly to 1,000 and to the
integrations a source spends in the beam).
Baseline: the 6-minute goal (a tenth of the block's observing time).
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from casacore import tables

from bench.common import report
from dsa110d.config import Config, ProcessorConfig, SupervisorConfig
from dsa110d.science.beam import angular_offset_rad, primary_beam
from dsa110d.science.catalog import Catalog, random_catalog
from dsa110d.science.constants import INTEGRATION_TIME_S, INTEGRATIONS_PER_FILE
from dsa110d.science.photometry.accumulation import BEAM_GAIN_MIN
from dsa110d.science.photometry.geometry import SIDEREAL_RATE_RAD_S
from dsa110d.science.photometry.stage import measure_block
from dsa110d.science.pipeline.blocks import BlockPlan
from dsa110d.science.pipeline.flagging import flag_ms, flag_processes, flag_stage
from dsa110d.science.pipeline.stage import BlockJob
from tests.helpers.testms import SkyModel, make_ms

CHUNKS_PER_BLOCK = 13
GOAL_SEC = 360.0
REUSE_ENV = "BENCH_BLOCK_MS"
"""Path of a real-scale chunk MS to copy instead of building one (saves ~3 minutes)."""
IN_BEAM_SOURCES = 100
"""The worst case is measured with this many in-beam sources and scaled to 1,000 (linear)."""
DEC_DEG = 30.0
RA_DEG = 100.0
MID_MJD_S = 61000 * 86400.0


def _in_beam_catalog(n: int) -> Catalog:
    rng = np.random.default_rng(1)
    ra = RA_DEG + rng.uniform(-2.0, 2.0, n) / math.cos(math.radians(DEC_DEG))
    dec = DEC_DEG + rng.uniform(-1.5, 1.5, n)
    return Catalog(tuple(f"B{i:04d}" for i in range(n)), ra, dec, np.ones(n))


def _transit_integrations() -> int:
    """Integrations a source at the pointing declination spends above BEAM_GAIN_MIN."""
    hour_angle = SIDEREAL_RATE_RAD_S * INTEGRATION_TIME_S * np.arange(-400, 401)
    dec = math.radians(DEC_DEG)
    offsets = angular_offset_rad(hour_angle, dec, 0.0, dec)
    return int(np.count_nonzero(primary_beam(offsets, 1.405e9) >= BEAM_GAIN_MIN))


def _cpu_sec() -> float:
    """CPU time of this process and its finished children (user + system)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _flag_in_parallel(job: BlockJob, ms: Path, root: Path) -> dict[str, float]:
    """Copies of the pristine chunk, one per core, flagged together by the flag stage: its
    wall time and each chunk's CPU time (the children's)."""
    config = Config()
    processes = flag_processes(config, CHUNKS_PER_BLOCK)
    config = config.model_copy(update={"supervisor": SupervisorConfig(workers=processes)})
    copies = [Path(shutil.copytree(ms, root / f"copy{i}.ms")) for i in range(processes)]
    cpu = _cpu_sec()
    started = time.perf_counter()
    flag_stage(job, copies, config, root)
    wall = time.perf_counter() - started
    cpu_sec = _cpu_sec() - cpu
    for copy in copies:
        shutil.rmtree(copy)
    return {
        "processes": processes,
        "chunks": len(copies),
        "wall_sec": round(wall, 1),
        "wall_sec_per_chunk": round(wall / len(copies), 1),
        "cpu_sec_per_chunk": round(cpu_sec / len(copies), 1),
    }


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench_block_"))
    started = time.perf_counter()
    reuse = os.environ.get(REUSE_ENV)
    if reuse:  # a chunk an earlier run built (its FLAG column is reset below)
        ms = Path(shutil.copytree(reuse, root / "chunk.ms"))
    else:
        empty = SkyModel(np.zeros(0), np.zeros(0), np.zeros(0))
        ms = make_ms(root / "chunk.ms", empty, mid_time_mjd_s=MID_MJD_S, phase_ra_deg=RA_DEG,
                     dec_deg=DEC_DEG, n_ant=96, n_chan=768, n_times=24)  # fmt: skip
    build_sec = time.perf_counter() - started
    with tables.table(str(ms), readonly=False, ack=False) as table:
        table.putcol("FLAG", np.zeros_like(table.getcol("FLAG")))
    job = BlockJob(BlockPlan.from_config(ProcessorConfig()).block(0))
    parallel = _flag_in_parallel(job, ms, root)
    started = time.perf_counter()
    flag_ms(ms)
    flag_sec = time.perf_counter() - started
    rounds = math.ceil(CHUNKS_PER_BLOCK / parallel["processes"])
    block_flag_sec = rounds * parallel["wall_sec"]
    figures: dict[str, object] = {
        "chunk_build_sec": round(build_sec, 1),
        "flag_chunk_sec": round(flag_sec, 1),
        "flag_parallel": parallel,
        "flag_block_sec": round(block_flag_sec, 1),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    strip = random_catalog(DEC_DEG, 1000, seed=0)
    measure_block(job, [ms], _in_beam_catalog(2))  # warm up astropy's IERS tables
    transit = _transit_integrations()
    figures["transit_integrations_per_source"] = transit
    for name, catalog, chunks_per_block in (
        ("strip", strip, float(CHUNKS_PER_BLOCK)),
        # All 1,000 in this chunk's beam for all 24 integrations; in a block each is in the
        # beam for ``transit`` integrations, so the block costs transit / 24 chunks' worth.
        ("all_in_beam", _in_beam_catalog(IN_BEAM_SOURCES), transit / INTEGRATIONS_PER_FILE),
    ):
        started = time.perf_counter()
        frame = measure_block(job, [ms], catalog)
        seconds = (time.perf_counter() - started) * 1000 / len(catalog)
        block = block_flag_sec + chunks_per_block * seconds
        figures[name] = {
            "sources_measured_in_chunk": len(frame),
            "measured_with_sources": len(catalog),
            "photometry_chunk_sec": round(seconds, 1),
            "block_sec_estimate": round(block, 1),
            "goal_sec": GOAL_SEC,
            "ratio_goal_over_ours": round(GOAL_SEC / block, 2),
        }
    report("block", figures)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
