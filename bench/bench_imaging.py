"""Imaging a block at real scale: chunk images, the mosaic, source finding, fast alerts, tclean.

``BENCH_IMG_CHUNKS`` real-scale sets (96 antennas, ``BENCH_IMG_SUBBANDS`` subbands of 48
channels, 24 integrations of ~12.9 s: 5 minutes each; defaults 2 and 16) are simulated with
two bright uncatalogued transients on the track (not timed). Then, as the daemon does:

- per chunk, the **fast alert** path (``science.imaging.fast.search_chunk``) right after the
  chunk's conversion (``convert_set``): the latency from a set landing to its fast alert is
  conversion + fast search (the watcher's stability wait, ~1 s, and the queue hops are not in
  it);
- the block's **image stage** steps: wsclean per chunk, the primary-beam weighted mosaic
  (``reproject``), Aegean on the mosaic and the catalog match;
- **CASA tclean** (casatools 6.7, ``BENCH_CASA_PYTHON``, a venv of its own) on a copy of the
  first chunk's MS: the same image size and cell, Stokes I, Briggs 0, the w-projection
  gridder (tclean's accurate one for these w-terms, as the w-gridder is wsclean's), Hogbom
  clean to 1 sigma with the same iteration cap.

The real-time factor is the block's observing time over its processing time (fast searches +
chunk images + mosaic + finder, one process); a 60-minute block scales by its 12 chunks. The
machine is shared (2 cores, other sessions): the load average is recorded beside each figure.

The end-to-end run on a quiet machine (2026-12-07 07:42-08:04 UTC, 2 chunks, tclean) is in
docs/performance.md ("Sixth session's runs"). Before it, measured 2026-12-07 03:19-04:10 UTC,
one real-scale chunk (96 antennas, 16 subbands x 48 = 768 channels, 24 integrations, 111,744
rows, a 1.4 GB MS), the default imaging configuration (2048 x 6 arcsec, Briggs 0, clean to 1
sigma inside a 4-sigma auto-mask, niter 10000, 1 thread). The machine was shared with 6 other
sessions: load average 8 to 19 on 2 cores, so the wall times are 2.5-4x the CPU times; the CPU
seconds (process + children) are the figures to compare. The full run (2 chunks, tclean last)
could not finish before the session's deadline at that load: the steps were run one by one on
the same MS (``main()``'s functions, the run killed after its conversion) and are reported here
by hand, not in bench/results:

- conversion (``convert_set``): 26.4 s wall, 5.4 s CPU in the parent (load 13.5);
- wsclean, the chunk image: 1414 s wall, **485 s CPU** (load 19 -> 8);
- one-chunk primary-beam corrected image (``build_mosaic``, reproject 2048^2): 30.2 s wall,
  12.9 s CPU; Aegean + catalog match + vetoes: 12.3 s wall, 4.9 s CPU (12 sources, 2 new:
  2 transients injected; chunk noise 0.32 mJy/beam);
- **latency set landed -> fast alert** = conversion + wsclean + beam + Aegean: ~508 CPU-s,
  8.5 min on a free core (goal <= 10 min: met only with a core to itself); 25 min wall at
  the recorded load;
- **real-time factor**: each chunk is imaged twice (fast, then again by the block stage), so
  ~1000 CPU-s of imaging per 309-s chunk: 0.31 per core, 0.62 on 2 cores with nothing else
  running (goal >= 1 with the rest of the pipeline: not met). Reusing the fast image in the
  block stage (no calibration between them) would halve it; wsclean's deep clean (1 sigma,
  niter 10000 at 2048^2) is the cost to cut;
- **tclean vs wsclean** on the same MS, 2048 x 6 arcsec, Briggs 0, Stokes I, dirty images
  (niter 0: weighting, gridding, FFT, PSF), run side by side at load 7 -> 3: wsclean
  (w-gridder, 1 thread) 51.4 CPU-s (138 s wall), CASA 6.7 tclean (w-projection,
  wprojplanes -1, OMP_NUM_THREADS 1) 126.2 CPU-s (239 s wall): **wsclean 2.5x less CPU**
  (1.7x in wall time). The clean to 1 sigma is 9x the dirty image's cost in wsclean (485 vs
  51 CPU-s). The full clean (niter 10000, 1 sigma): tclean (Hogbom, gain 0.1, 7 major
  cycles, stopped at 10000 iterations) 806.8 CPU-s (840 s wall, load 3 -> 1.8) against
  wsclean's 485 CPU-s above: **wsclean 1.7x less CPU** (wall times not comparable: wsclean ran
  at load 19 -> 8). tclean needs the measures data: a ``~/.casa/config.py`` setting
  ``measurespath`` to python-casacore's bundled data and the auto-updates off (the CASA venv
  has none of its own; HOME is pointed at such a directory for the run).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import report

START = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
CHUNK_SEC = 309.0
"""A set's span: 24 integrations of 12.88 s."""
TRANSIENT_FLUX_JY = (0.1, 0.2)
"""Bright enough to alert in one real-scale chunk (~100 sigma)."""
GOAL_LATENCY_S = 600.0
GOAL_RTF = 1.0


def _load() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _simulate(root: Path, sets: int, n_subbands: int) -> tuple[list[list[Path]], list[str], Path]:
    from dsa110d.science.catalog import write_catalog
    from dsa110d.science.simulation.simulate import SimulationSpec, simulate, sky_catalog

    spec = SimulationSpec(
        out=root / "incoming", start=START, sets=sets, scale="real", n_subbands=n_subbands,
        seed=18, corrupt="none", variable_fraction=0.0, transients=2,
        transient_flux_range_jy=TRANSIENT_FLUX_JY,
    )  # fmt: skip
    catalog = root / "catalog.csv"
    write_catalog(catalog, sky_catalog(spec))
    result = simulate(SimulationSpec(**{**spec.__dict__, "catalog": catalog}))
    truth = json.loads(result.truth_path.read_text())  # type: ignore[union-attr]
    files = [[spec.out / n for n in s["files"]] for s in truth["sets"]]
    return files, [s["set_id"] for s in truth["sets"]], catalog


def _config(root: Path, catalog: Path) -> Any:
    from dsa110d.config import Config, PathsConfig, PipelineConfig

    paths = PathsConfig(
        incoming_dir=root / "incoming", ms_dir=root / "ms", results_dir=root / "results",
        processed_dir=root / "processed", state_dir=root / "state", log_dir=root / "logs",
        catalog=catalog,
    )  # fmt: skip
    return Config(env="testing", paths=paths, pipeline=PipelineConfig(stages=["image"]))


CPU_S: dict[str, list[float]] = {}
"""CPU seconds (this process and its children: wsclean, tclean, the converter's) per step:
on a shared machine the wall time mostly measures the other sessions."""


def _cpu() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn: Any, *args: Any) -> tuple[Any, float, list[float]]:
    began, cpu = time.perf_counter(), _cpu()
    out = fn(*args)
    took, load, used = time.perf_counter() - began, _load(), _cpu() - cpu
    CPU_S.setdefault(fn.__name__, []).append(used)
    # progress as it goes: a long run cut short still leaves its figures
    stamp = time.strftime("%H:%M:%S")
    print(f"{stamp} {fn.__name__}: {took:.1f} s wall, {used:.1f} s CPU, load {load}", flush=True)
    return out, took, load


def _block(config: Any, ms_paths: list[Path], scratch: Path) -> dict[str, Any]:
    """The image stage's steps, timed one by one (as ``pipeline.imaging.image_and_search``)."""
    from dsa110d.science.catalog import read_catalog
    from dsa110d.science.imaging.chunk import image_chunk
    from dsa110d.science.imaging.finder import find_sources, match_catalog
    from dsa110d.science.imaging.mosaic import build_mosaic
    from dsa110d.science.imaging.settings import finder_params, imaging_params

    params = imaging_params(config.imaging)
    scratch.mkdir(parents=True, exist_ok=True)
    chunks, wsclean_s, loads = [], [], []
    for i, ms in enumerate(ms_paths):
        chunk, took, load = _timed(image_chunk, ms, scratch / f"chunk{i:02d}", params)
        chunks.append(chunk)
        wsclean_s.append(took)
        loads.append(load)
    mosaic, mosaic_s, mosaic_load = _timed(build_mosaic, chunks)
    finder = finder_params(config.imaging)
    found, find_s, find_load = _timed(find_sources, mosaic, scratch, finder)
    catalog = read_catalog(config.paths.catalog)
    matched, match_s, _ = _timed(match_catalog, found, catalog, mosaic.header["BMAJ"], finder)
    return {
        "wsclean_s": wsclean_s, "wsclean_loadavg": loads,
        "mosaic_s": mosaic_s, "mosaic_loadavg": mosaic_load,
        "mosaic_shape": list(mosaic.image.shape),
        "finder_s": find_s + match_s, "finder_loadavg": find_load,
        "sources": len(matched), "new_sources": int(matched["new_source"].sum()),
    }  # fmt: skip


TCLEAN_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from casatasks import tclean
    vis, name, cell = sys.argv[1], sys.argv[2], sys.argv[4]
    size, niter = int(sys.argv[3]), int(sys.argv[5])
    t0 = time.perf_counter()
    tclean(vis=vis, imagename=name, imsize=[size, size], cell=cell, stokes="I", specmode="mfs",
           gridder="wproject", wprojplanes=-1, weighting="briggs", robust=0.0,
           deconvolver="hogbom", niter=niter, nsigma=1.0, datacolumn="data")
    print(json.dumps({"tclean_s": time.perf_counter() - t0}))
    """
)


def _casa_home(out: Path) -> dict[str, str]:
    """An environment whose HOME holds a CASA config pointing at python-casacore's bundled
    measures data with the auto-updates off: casaconfig refuses to start without data, and the
    CASA venv has none of its own (nor the network to fetch it)."""
    import casacore

    home = out / "casahome"
    (home / ".casa").mkdir(parents=True, exist_ok=True)
    data = Path(casacore.__file__).parent / "data"
    (home / ".casa" / "config.py").write_text(
        f"measurespath = {str(data)!r}\nmeasures_auto_update = False\ndata_auto_update = False\n"
    )
    return {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1"}


def _tclean(python: str, ms: Path, out: Path, size: int, scale_arcsec: float, niter: int) -> float:
    script = out / "tclean.py"
    script.write_text(TCLEAN_SCRIPT)
    done = subprocess.run(
        [python, str(script), str(ms), str(out / "tclean"), str(size), f"{scale_arcsec:g}arcsec",
         str(niter)],
        capture_output=True, text=True, cwd=out, check=True, timeout=7200, env=_casa_home(out),
    )  # fmt: skip
    return float(json.loads(done.stdout.strip().splitlines()[-1])["tclean_s"])


def main() -> None:
    from dsa110d.science.conversion.convert import convert_set
    from dsa110d.science.imaging.fast import search_chunk

    n_chunks = int(os.environ.get("BENCH_IMG_CHUNKS", "2"))
    n_subbands = int(os.environ.get("BENCH_IMG_SUBBANDS", "16"))
    casa_python = os.environ.get("BENCH_CASA_PYTHON")
    root = Path(tempfile.mkdtemp(prefix="bench-imaging-"))
    try:
        (sets, set_ids, catalog), simulate_s, _ = _timed(_simulate, root, n_chunks, n_subbands)
        config = _config(root, catalog)
        ms_paths, latency, fast_s, convert_s, alerts, loads = [], [], [], [], [], []
        for files, set_id in zip(sets, set_ids, strict=True):
            ms = root / "ms" / f"{set_id}.ms"
            _, took_convert, _ = _timed(convert_set, files, ms)
            found, took_fast, load = _timed(
                search_chunk, ms, set_id, config, root / "fast" / set_id
            )
            ms_paths.append(ms)
            convert_s.append(took_convert)
            fast_s.append(took_fast)
            latency.append(took_convert + took_fast)
            alerts.append(len(found))
            loads.append(load)
        shutil.rmtree(root / "incoming", ignore_errors=True)
        block = _block(config, ms_paths, root / "block")
        processing = sum(fast_s) + sum(block["wsclean_s"]) + block["mosaic_s"] + block["finder_s"]
        per_chunk = processing / n_chunks
        figures: dict[str, Any] = {
            "chunks": n_chunks, "subbands": n_subbands, "simulate_s_untimed": simulate_s,
            "image_px": config.imaging.size_px,
            "scale_arcsec": config.imaging.scale_arcsec, "wsclean_threads": config.imaging.threads,
            "convert_s": convert_s, "fast_search_s": fast_s, "fast_loadavg": loads,
            "fast_alerts_per_chunk": alerts, "latency_set_to_fast_alert_s": latency,
            "goal_latency_s": GOAL_LATENCY_S, "block": block,
            "block_processing_s": processing,
            "real_time_factor": n_chunks * CHUNK_SEC / processing,
            "real_time_factor_60min_block_extrapolated": 12 * CHUNK_SEC / (12 * per_chunk),
            "note": "real-time factor = observing time / imaging time (fast + block imaging, "
            "mosaic, finder) in one process, without conversion, flagging or photometry",
        }  # fmt: skip
        if casa_python:
            out = root / "casa"
            out.mkdir()
            casa_ms = out / "chunk0.ms"
            shutil.copytree(ms_paths[0], casa_ms)
            before, cpu = _load(), _cpu()
            tclean_s = _tclean(
                casa_python, casa_ms, out, config.imaging.size_px, config.imaging.scale_arcsec,
                config.imaging.niter,
            )  # fmt: skip
            figures["tclean_s"] = tclean_s
            figures["tclean_cpu_s"] = _cpu() - cpu
            figures["tclean_loadavg"] = [before, _load()]
            figures["wsclean_vs_tclean_speedup"] = tclean_s / block["wsclean_s"][0]
        figures["cpu_s"] = CPU_S
        if "tclean_cpu_s" in figures:
            wsclean_cpu = CPU_S["image_chunk"][0]
            figures["wsclean_vs_tclean_cpu_speedup"] = figures["tclean_cpu_s"] / wsclean_cpu
        report("imaging", figures)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
