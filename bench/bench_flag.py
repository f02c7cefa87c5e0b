"""Flagging one real-scale chunk: the ``flag`` stage (AOFlagger and the rest) against the MAD
flagger (``flag-mad``), in the same run, on the same Measurement Set.

One set (16 subbands, ~2.2 GB) is simulated with the simulator's RFI and antenna-fault model
alone (``corrupt_rfi``: the gains of level ``all`` would need a calibration first) and
converted once into ``$DSA110_BENCH_DIR`` (default /tmp/dsa110d-bench-flag). Each flagger runs
on its own copy of the MS; figures: wall time, CPU time (this process and its children:
AOFlagger, the forked flag passes), and the flags against the truth file: the fraction of the
cross-correlation samples with interference above 3 sigma flagged, of the faulty antennas' and
dropped packets' samples, and of the clean samples. The load average is recorded beside them:
the machine is shared. ``DSA110_BENCH_SCALE=tiny`` checks that the benchmark works.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from casacore import tables

from bench.common import report

SCRATCH = Path(os.environ.get("DSA110_BENCH_DIR", "/tmp/dsa110d-bench-flag"))
SCALE = os.environ.get("DSA110_BENCH_SCALE", "real")
SET_START = datetime(2026, 3, 20, 8, 0, 0, tzinfo=UTC)
SEED = 17
RFI_SIGMA = 3.0


def _prepare() -> tuple[Path, dict[str, Any]]:
    from dsa110d.science.astrometry import use_offline_iers
    from dsa110d.science.conversion.convert import convert_set
    from dsa110d.science.simulation import corruptions
    from dsa110d.science.simulation.corrupt_rfi import RFI
    from dsa110d.science.simulation.simulate import SimulationSpec, simulate

    root = SCRATCH / SCALE
    ms, truth_path = root / "chunk.ms", root / "incoming" / "truth.json"
    if ms.exists() and truth_path.exists():
        return ms, json.loads(truth_path.read_text())
    shutil.rmtree(root, ignore_errors=True)
    use_offline_iers()
    spec = SimulationSpec(out=root / "incoming", start=SET_START, sets=1, scale=SCALE,
                          seed=SEED, corrupt="all")  # fmt: skip
    original = corruptions.build
    corruptions.build = lambda level, instrument: [RFI(instrument)]
    try:
        result = simulate(spec)
    finally:
        corruptions.build = original
    convert_set(sorted(result.files), ms)
    for path in result.files:
        path.unlink()
    assert result.truth_path is not None
    return ms, json.loads(result.truth_path.read_text())


def _cpu() -> float:
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _score(ms: Path, truth: dict[str, Any]) -> dict[str, float | None]:
    from dsa110d.science.simulation.corrupt_rfi import truth_masks

    with tables.table(str(ms), ack=False) as t:
        times = t.getcol("TIME")
        ant1, ant2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        flags = t.getcol("FLAG").any(axis=2)
    with tables.table(f"{ms}::SPECTRAL_WINDOW", ack=False) as spw:
        freq = spw.getcol("CHAN_FREQ")[0]
    unique = np.unique(times)
    n_bls = len(times) // len(unique)
    flags = flags.reshape(len(unique), n_bls, -1)
    masks = truth_masks(truth, unique / 86400 + 2400000.5, freq, ant1[:n_bls], ant2[:n_bls])
    cross = (ant1[:n_bls] != ant2[:n_bls])[None, :, None]
    strong = masks.rfi_above(RFI_SIGMA) & ~masks.faulty & cross
    clean, faulty = masks.clean & cross, masks.faulty & cross
    return {
        "rfi_above_3sigma_flagged": float(flags[strong].mean()) if strong.any() else None,
        "faulty_flagged": float(flags[faulty].mean()) if faulty.any() else None,
        "clean_flagged": float(flags[clean].mean()),
        "samples_rfi_above_3sigma": int(strong.sum()),
        "samples_clean": int(clean.sum()),
    }


def _run(name: str, ms: Path, truth: dict[str, Any]) -> dict[str, Any]:
    from dsa110d.config import Config, PathsConfig, ProcessorConfig
    from dsa110d.science.pipeline.blocks import BlockPlan
    from dsa110d.science.pipeline.stage import BlockJob
    from dsa110d.science.pipeline.stages import builtin_stages

    work = SCRATCH / SCALE / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    copy = Path(shutil.copytree(ms, work / ms.name))
    config = Config(paths=PathsConfig(results_dir=work / "results"))
    job = BlockJob(BlockPlan.from_config(ProcessorConfig()).block(0))
    stage = builtin_stages()[name]
    load = os.getloadavg()
    cpu0, t0 = _cpu(), time.perf_counter()
    result = stage(job, [copy], config, work)
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    figures = {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "loadavg_before": [round(x, 2) for x in load],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "summary": {k: v for k, v in result.summary.items() if "fraction" in k or "antennas" in k},
        **_score(copy, truth["corruptions"]["rfi"]),
    }
    shutil.rmtree(work, ignore_errors=True)
    return figures


def main() -> None:
    ms, truth = _prepare()
    figures: dict[str, Any] = {name: _run(name, ms, truth) for name in ("flag", "flag-mad")}
    figures["injected_bad_antennas"] = truth["corruptions"]["rfi"]["bad_antenna_names"]
    figures["scale"] = SCALE
    figures["cpus_usable"] = len(os.sched_getaffinity(0))
    report(f"flag_{SCALE}" if SCALE != "real" else "flag", figures)


if __name__ == "__main__":
    main()
