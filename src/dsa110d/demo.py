"""``dsa110d demo``: the whole pipeline on a simulated sky, live, on an embedded server.

Orchestration only. In a scratch directory (or ``--workdir``) the demo

1. starts the embedded Valkey server and writes the simulated sky's catalog (the same one the
   simulator observes, so the processor knows the sources before the first set lands);
2. starts ``dsa110d run --services all`` as a subprocess (development settings, every path in
   the scratch directory, and the demo overrides of :func:`demo_overrides`, shown on screen);
3. starts ``dsa110d simulate --live`` as a subprocess: sets land in ``incoming/`` as the
   correlator writes them, ``speed`` times faster than real time, over several sidereal days;
4. shows live progress read from Redis through the state API (sets seen and converted,
   blocks processed, analysis runs, candidates) until every set is converted, every block
   processed and an analysis run has taken every block;
5. prints the variability report, the plots and the verdict against the simulator's truth
   (:mod:`dsa110d.demo_report`).

While it runs, the daemon serves the web console (the ``web`` service) on loopback and the demo
prints its address. The results (photometry, variability tables, plots) go to ``--results``, by
default a new ``./demo-results/<UTC time>/`` (or ``<workdir>/results``), and are kept: the demo
ends by saying where. Ctrl-C (or SIGTERM) stops the simulator and the daemon (SIGTERM, waited
for), stops the server and removes the scratch directory (the simulated files, the MSs, the
state) unless ``--workdir`` was given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import anyio
from rich.console import Console
from rich.live import Live
from rich.table import Table

from dsa110d.config import Config, load_config, resolve_path
from dsa110d.demo_report import Verdict, judge, verdict_line
from dsa110d.messages import MessageType
from dsa110d.privileges import ALLOW_ROOT_ENV
from dsa110d.science.catalog import write_catalog
from dsa110d.science.simulation.simulate import SimulationSpec, sky_catalog
from dsa110d.state import embedded
from dsa110d.state.analysis import AnalysisQueue
from dsa110d.state.blocks import Blocks, BlockState
from dsa110d.state.candidates import CandidateStore
from dsa110d.state.connection import Redis, connected
from dsa110d.state.keys import Keys
from dsa110d.state.sets import Sets, SetState
from dsa110d.state.streams import ReliableStream

START = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
"""First simulated set (inside the bundled IERS tables, so nothing is downloaded)."""
POLL_SEC = 0.5
STOP_TIMEOUT_SEC = 30.0
CORRUPT = "gains"
"""The demo's data are corrupted by antenna gains (and its sky has a calibrator): the pipeline
must calibrate them to recover the variables."""
RESULTS_HOME = Path("demo-results")
"""Where the demo keeps its results unless told (relative to the working directory)."""


@dataclass(frozen=True)
class DemoPlan:
    """How much sky, how fast, and the demo's analysis settings."""

    scale: str = "small"
    subbands: int = 4
    sets_per_day: int = 12
    days: int = 4
    speed: float = 60.0
    """Simulated time runs this many times faster: one set every 309 s / speed."""
    seed: int = 110
    n_sources: int = 40
    flux_range_jy: tuple[float, float] = (0.5, 5.0)
    """The demo sky is brighter than the real one so a small array measures it well."""
    ra_margin_deg: float = -2.5
    dec_halfwidth_deg: float = 1.0
    """The demo sky lies where the beam sees it transit inside the simulated hours."""
    variable_fraction: float = 0.2
    min_data_points: int = 3
    workers: int = 2
    timeout_sec: float = 900.0
    """Give up (and say so) if the pipeline has not finished by then."""

    @property
    def n_sets(self) -> int:
        return self.sets_per_day * self.days


QUICK = DemoPlan(
    sets_per_day=4, days=2, speed=120.0, n_sources=10, ra_margin_deg=-1.0, min_data_points=2
)
"""``--quick``: the smallest demo that still reaches an analysis verdict (for tests)."""


def demo_overrides(plan: DemoPlan) -> dict[str, str]:
    """The demo's settings on top of the development environment, as DSA110__ variables."""
    return {
        "DSA110__SERVICES__HDF5_WATCHER__EXPECTED_SUBBANDS": str(plan.subbands),
        "DSA110__SERVICES__HDF5_WATCHER__STABILITY_INTERVAL_SEC": "0.05",
        "DSA110__SERVICES__HDF5_WATCHER__POLL_INTERVAL_SEC": "2",
        # One chunk per block: each set is photometered as soon as it is converted, and no
        # block waits for chunks that the short simulated days never produce. A source is
        # measured once a day, in the set of its transit (six integrations at small scale,
        # so the peak usually falls inside the block, not at its edge).
        "DSA110__SERVICES__MS_PROCESSOR__MOSAIC_DURATION_MIN": "5",
        "DSA110__SERVICES__MS_PROCESSOR__MOSAIC_OVERLAP_MIN": "0",
        "DSA110__SERVICES__MS_PROCESSOR__POLL_INTERVAL_SEC": "2",
        "DSA110__SERVICES__VARIABILITY_ANALYZER__MIN_DATA_POINTS": str(plan.min_data_points),
        "DSA110__SERVICES__VARIABILITY_ANALYZER__ANALYSIS_DEBOUNCE_SEC": "3",
        "DSA110__SUPERVISOR__WORKERS": str(plan.workers),
        # The simulated data carry antenna gains, delays and bandpasses, as the telescope's
        # do: the pipeline calibrates them (bandpass on the calibrator's daily transit, gains
        # per chunk) and the photometry refuses what it could not calibrate.
        "DSA110__CALIBRATION__ENABLED": "true",
        "DSA110__PIPELINE__STAGES": "[flag, calibrate, photometry]",
    }


def results_location(workdir: Path | None, results: Path | None, now: datetime) -> Path:
    """Where the results go and stay: ``--results``, else ``<workdir>/results``, else a new
    ``./demo-results/<UTC time>`` (a fresh directory: an earlier run's photometry must not
    join this run's analysis)."""
    if results is not None:
        return results
    if workdir is not None:
        return workdir / "results"
    return RESULTS_HOME / now.strftime("%Y%m%dT%H%M%SZ")


def console_port(preferred: int) -> int:
    """The configured console port when it is free on loopback, else any free one (a demo
    must not fail because something else listens on 8110)."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port on 127.0.0.1 for the web console")


def demo_environ(
    workdir: Path, plan: DemoPlan, results: Path | None = None, web_port: int | None = None
) -> dict[str, str]:
    """The daemon's environment: every path inside ``workdir`` (the results in ``results``
    when given), the embedded server, the web console on loopback at ``web_port``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DSA110__")}
    environ.update(
        {
            "DSA110__REDIS__EMBEDDED": "true",
            "DSA110__PATHS__CATALOG": str(workdir / "catalog.csv"),
            **{
                f"DSA110__PATHS__{name.upper()}": str(workdir / name.removesuffix("_dir"))
                for name in ("incoming_dir", "ms_dir", "results_dir", "processed_dir")
            },
            **({"DSA110__PATHS__RESULTS_DIR": str(results)} if results is not None else {}),
            "DSA110__SERVICES__WEB__ENABLED": "true",
            "DSA110__SERVICES__WEB__HOST": "127.0.0.1",
            **({"DSA110__SERVICES__WEB__PORT": str(web_port)} if web_port else {}),
            "DSA110__PATHS__STATE_DIR": str(workdir / "state"),
            "DSA110__PATHS__LOG_DIR": str(workdir / "logs"),
            **demo_overrides(plan),
        }
    )
    if os.geteuid() == 0:  # a user's first try may well be as root: the demo says so and goes on
        environ[ALLOW_ROOT_ENV] = "1"
    return environ


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from dsa110d.cli.daemon import main; main()", *args]


@dataclass
class Progress:
    """The counts the progress display shows."""

    sets_seen: int = 0
    sets_converted: int = 0
    sets_failed: int = 0
    blocks: int = 0
    blocks_processed: int = 0
    analysis_runs: int = 0
    analysis_pending: int = 0
    candidates: int = 0
    last_status: str = ""

    def finished(self, plan: DemoPlan, simulator_done: bool) -> bool:
        return (
            simulator_done
            and self.sets_converted + self.sets_failed >= plan.n_sets
            and self.blocks > 0
            and self.blocks_processed == self.blocks
            and self.analysis_runs > 0
            and self.analysis_pending == 0
            and self.last_status == "ok"
        )


async def read_progress(redis: Redis, config: Config) -> Progress:
    """Every count from Redis, through the state layer."""
    keys = Keys(config.redis.namespace)
    sets = await Sets(redis, keys).list()
    blocks = await Blocks(redis, keys).blocks()
    queue = AnalysisQueue(redis, keys)
    outlook = await queue.outlook()
    last = await queue.last_run() or {}
    runs = ReliableStream(
        redis, keys, MessageType.VARIABILITY_ANALYSIS, "demo", config.streams, config.retry
    )
    stats = await runs.stats()
    report = await CandidateStore(redis, keys).latest()
    return Progress(
        sets_seen=len(sets),
        sets_converted=sum(s.state is SetState.CONVERTED for s in sets),
        sets_failed=sum(s.state is SetState.FAILED for s in sets),
        blocks=len(blocks),
        blocks_processed=sum(b.state is BlockState.PROCESSED and not b.stale for b in blocks),
        analysis_runs=stats.length,
        analysis_pending=outlook.pending,
        candidates=len(report.candidates) if report else 0,
        last_status=str(last.get("status", "")),
    )


def progress_table(plan: DemoPlan, p: Progress, elapsed: float, landed: int) -> Table:
    table = Table(title=f"dsa110d demo: {elapsed:5.0f} s", show_header=False, min_width=60)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("bar")

    def bar(done: int, total: int) -> str:
        width = 30
        filled = round(width * done / total) if total else 0
        return "[green]" + "#" * filled + "[/green]" + "." * (width - filled)

    table.add_row("subband files landed", f"{landed}/{plan.n_sets * plan.subbands}",
                  bar(landed, plan.n_sets * plan.subbands))  # fmt: skip
    table.add_row("sets seen", f"{p.sets_seen}/{plan.n_sets}", bar(p.sets_seen, plan.n_sets))
    table.add_row(
        "sets converted",
        f"{p.sets_converted}/{plan.n_sets}"
        + (f" ({p.sets_failed} failed)" if p.sets_failed else ""),
        bar(p.sets_converted, plan.n_sets),
    )
    table.add_row("blocks processed", f"{p.blocks_processed}/{p.blocks}",
                  bar(p.blocks_processed, max(p.blocks, 1)))  # fmt: skip
    table.add_row("analysis runs", str(p.analysis_runs), f"blocks waiting: {p.analysis_pending}")
    table.add_row("candidates", str(p.candidates), "")
    return table


@dataclass
class Processes:
    """The demo's children."""

    daemon: subprocess.Popen[str] | None = None
    simulator: subprocess.Popen[str] | None = None

    def stop(self) -> int | None:
        """SIGTERM both (simulator first), wait; the daemon's exit code."""
        code = None
        for proc in (self.simulator, self.daemon):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_SEC)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.daemon is not None:
            code = self.daemon.returncode
        return code


def start_processes(
    procs: Processes, workdir: Path, plan: DemoPlan, environ: dict[str, str], log: TextIO
) -> None:
    """The daemon, then the live simulator, both logging to ``log``."""
    procs.daemon = subprocess.Popen(
        _cli("run", "--env", "development", "--services", "all", "--log-format", "json"),
        env=environ, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    procs.simulator = subprocess.Popen(
        _cli(
            "simulate", "--out", str(workdir / "incoming"), "--start", START.isoformat(),
            "--sets", str(plan.sets_per_day), "--days", str(plan.days), "--scale", plan.scale,
            "--subbands", str(plan.subbands), "--seed", str(plan.seed),
            "--catalog", str(workdir / "catalog.csv"), "--truth", str(workdir / "truth.json"),
            "--live", "--speed", str(plan.speed),
            "--variable-fraction", str(plan.variable_fraction),
            "--corrupt", CORRUPT,
        ),
        env=environ, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


async def watch(
    config: Config, plan: DemoPlan, procs: Processes, console: Console
) -> tuple[Progress, float]:
    """Show progress until the pipeline is done; the final counts and the seconds taken."""
    began = time.monotonic()
    incoming = config.paths.incoming_dir
    progress = Progress()
    async with connected(config) as redis:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while True:
                elapsed = time.monotonic() - began
                progress = await read_progress(redis, config)
                landed = len(list(incoming.glob("20*_sb??.hdf5"))) if incoming.exists() else 0
                live.update(progress_table(plan, progress, elapsed, landed))
                sim = procs.simulator
                sim_done = sim is not None and sim.poll() is not None
                if sim is not None and sim_done and sim.returncode != 0:
                    raise RuntimeError(f"the simulator failed (exit {sim.returncode})")
                if procs.daemon is not None and procs.daemon.poll() is not None:
                    raise RuntimeError(f"the daemon exited (code {procs.daemon.returncode})")
                if progress.finished(plan, sim_done) or elapsed > plan.timeout_sec:
                    return progress, elapsed
                await anyio.sleep(POLL_SEC)


def print_report(console: Console, verdict: Verdict, results: Path) -> None:
    """The variability report, the plots and the verdict against the truth."""
    console.rule("variability report")
    console.print("classes: " + ", ".join(f"{c} {n}" for c, n in sorted(verdict.counts.items())))
    cands = Table("source", "class", "n", "V", "eta", title="candidates")
    for row in verdict.candidates.itertuples(index=False):
        cands.add_row(str(row.source_id), str(row[verdict.candidates.columns.get_loc("class")]),
                      str(row.n), f"{row.v:.3f}", f"{row.eta:.3g}")  # fmt: skip
    console.print(cands)
    injected = Table("injected source", "kind", "measurements", "class found", "recovered",
                     title="injected variable sources (simulator truth)")  # fmt: skip
    for i in verdict.injected:
        mark = "yes" if i.recovered else ("no" if i.judged else i.why_unjudged)
        injected.add_row(i.source_id, i.kind, str(i.n), i.found_class, mark)
    console.print(injected)
    console.print(verdict_line(verdict))
    console.print("plots:")
    for plot in verdict.plots:
        console.print(f"  {plot}")
    console.print(f"results: {results}")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM to the demo stops it like Ctrl-C does."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(
    workdir: Path | None, plan: DemoPlan | None = None, results: Path | None = None
) -> int:
    """Run the demo; 0 when the pipeline finished and the report was printed."""
    plan = plan or DemoPlan()
    console = Console()
    scratch = workdir or Path(tempfile.mkdtemp(prefix="dsa110d-demo-"))
    scratch.mkdir(parents=True, exist_ok=True)
    kept = results_location(workdir, results, datetime.now(UTC)).absolute()
    existed = kept.exists()
    kept.mkdir(parents=True, exist_ok=True)
    defaults = load_config(resolve_path(None, os.environ), "development", {})
    environ = demo_environ(scratch, plan, kept, console_port(defaults.services.web.port))
    config = load_config(resolve_path(None, environ), "development", environ)
    procs = Processes()
    code = 1
    try:
        with _sigterm_as_interrupt():
            code = _run(console, scratch, plan, config, environ, procs)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping the daemon and the simulator[/yellow]")
        code = 130
    finally:
        procs.stop()
        embedded.stop_server(config.paths.state_dir)
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            console.print(f"files kept in {scratch} (daemon log: {scratch / 'demo.log'})")
        if not existed and not any(p.is_file() for p in kept.rglob("*")):
            shutil.rmtree(kept, ignore_errors=True)  # interrupted before any result: no litter
            with contextlib.suppress(OSError):
                kept.parent.rmdir()  # ./demo-results, when this run was its only content
        else:
            console.print(f"results and plots kept in {kept}")
    return code


def _run(
    console: Console,
    scratch: Path,
    plan: DemoPlan,
    config: Config,
    environ: dict[str, str],
    procs: Processes,
) -> int:
    console.print(f"dsa110d demo in {scratch}  (Ctrl-C stops it)")
    if ALLOW_ROOT_ENV in environ:
        console.print(f"running as root: {ALLOW_ROOT_ENV}=1 implied for the demo's daemon")
    console.print(
        f"sky: {plan.n_sets} sets ({plan.sets_per_day} per day x {plan.days} sidereal days), "
        f"scale {plan.scale}, {plan.subbands} subbands, seed {plan.seed}; live at {plan.speed:g}x; "
        f"{plan.n_sources} sources of {plan.flux_range_jy[0]:g}-{plan.flux_range_jy[1]:g} Jy"
    )
    console.print("demo settings: " + " ".join(f"{k}={v}" for k, v in demo_overrides(plan).items()))
    for name in ("incoming", "ms", "results", "processed", "logs"):
        (scratch / name).mkdir(exist_ok=True)
    console.print(f"results go to {config.paths.results_dir} (kept after the demo)")
    console.print(
        f"web console: {config.services.web.url}  (live while the demo runs: services, sets, "
        "blocks, candidates and their light curves)"
    )
    embedded.ensure_server(config.paths.state_dir)
    spec = SimulationSpec(
        out=scratch / "incoming", start=START, sets=plan.sets_per_day, days=plan.days,
        scale=plan.scale, n_subbands=plan.subbands, seed=plan.seed, n_sources=plan.n_sources,
        corrupt=CORRUPT,
    )  # fmt: skip
    sky = sky_catalog(spec, plan.flux_range_jy, plan.ra_margin_deg, plan.dec_halfwidth_deg)
    write_catalog(scratch / "catalog.csv", sky)
    with (scratch / "demo.log").open("a") as log:
        start_processes(procs, scratch, plan, environ, log)
        try:
            progress, elapsed = anyio.run(watch, config, plan, procs, console)
        except RuntimeError as exc:
            console.print(f"[red]demo failed: {exc}; see {scratch / 'demo.log'}[/red]")
            return 1
    if not progress.finished(plan, True):
        console.print(f"[red]the pipeline did not finish within {plan.timeout_sec:g} s[/red]")
        return 1
    console.print(
        f"pipeline finished in {elapsed:.0f} s: {progress.sets_converted} sets converted, "
        f"{progress.blocks_processed} blocks processed, {progress.analysis_runs} analysis runs"
    )
    results = config.paths.results_dir
    print_report(console, judge(scratch / "truth.json", results), results)
    return 0
