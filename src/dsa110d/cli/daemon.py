"""``dsa110d``: the daemon and its one-shot tools (demo, simulate, convert)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import anyio
import typer

from dsa110d import catalogue, logs
from dsa110d.cli.common import (
    ConfigOption,
    EnvOption,
    VersionOption,
    fail,
    load,
    run_app,
)
from dsa110d.config import Config
from dsa110d.errors import DSA110Error

app = typer.Typer(
    name="dsa110d",
    help="The DSA-110 continuum pipeline daemon and its one-shot tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(version: VersionOption = False) -> None:
    """The DSA-110 continuum pipeline daemon and its one-shot tools."""


def parse_services(spec: str) -> list[str]:
    """``all``, ``service_manager`` (the manager alone) or a comma-separated subset of the
    registered services, each by either of its names (``watcher`` or ``hdf5_watcher``...;
    services added through ``$DSA110_SERVICE_MODULES`` by their registered name)."""
    from dsa110d.services.base import load_service_modules

    known = load_service_modules()
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if names in ([catalogue.ALL], [catalogue.MANAGER]):
        return catalogue.services_of(names[0])
    chosen = [catalogue.canonical(n) for n in names]
    unknown = [n for n, c in zip(names, chosen, strict=True) if c not in known]
    if unknown or not names:
        fail(
            f"--services: unknown service {unknown[0] if unknown else spec!r}; "
            f"choose from {', '.join(known)}, their configuration names "
            f"({', '.join(e.section for e in catalogue.SERVICES)}), "
            f"{catalogue.ALL} or {catalogue.MANAGER}",
            code=2,
        )
    return chosen


def instance_label(chosen: list[str]) -> str:
    """What a daemon running ``chosen`` is called in its log (and its log file's name)."""
    if not chosen:
        return catalogue.MANAGER
    if sorted(chosen) == sorted(catalogue.BUILTIN):
        return catalogue.ALL
    return "+".join(catalogue.section_of(name) or name for name in chosen)


def setup_logging(
    config: Config, service: str, log_level: str | None, log_format: str | None
) -> None:
    log_file = config.paths.log_dir / f"{service}.log" if config.logging.file else None
    fmt = log_format or config.logging.format
    if fmt not in ("auto", "json", "console"):
        fail(f"--log-format: {fmt!r} is not auto, json or console", code=2)
    logs.configure(level=log_level or config.logging.level, fmt=fmt, log_file=log_file)  # type: ignore[arg-type]
    logs.bind(service=service)


@app.command()
def run(
    env: EnvOption = None,
    config: ConfigOption = None,
    services: Annotated[
        str,
        typer.Option(
            "--services",
            help="all, service_manager, or names: hdf5_watcher (watcher), ms_processor "
            "(processor), variability_analyzer (analyzer).",
        ),
    ] = "all",
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
    log_format: Annotated[str | None, typer.Option("--log-format")] = None,
    allow_root: Annotated[
        bool, typer.Option("--allow-root", help="Run as root (else DSA110_ALLOW_ROOT=1).")
    ] = False,
) -> None:
    """Run the daemon with the chosen services until SIGTERM or SIGINT."""
    from dsa110d.lifecycle import run_daemon
    from dsa110d.privileges import refuse_root, root_allowed, secure_process

    refuse_root(root_allowed(allow_root))
    cfg = load(config, env)
    secure_process(cfg.paths.state_dir, cfg.redis.embedded)
    chosen = parse_services(services)
    setup_logging(cfg, instance_label(chosen), log_level, log_format)
    raise typer.Exit(anyio.run(run_daemon, cfg, chosen, lambda: load(config, env)))


@app.command()
def demo(
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Keep the demo's files here.")
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="The smallest sky that reaches a verdict (tests).")
    ] = False,
    days: Annotated[int | None, typer.Option("--days", help="Sidereal days to simulate.")] = None,
    sets: Annotated[int | None, typer.Option("--sets", help="Sets per day.")] = None,
    speed: Annotated[
        float | None, typer.Option("--speed", help="Simulated time runs X times faster.")
    ] = None,
    scale: Annotated[str | None, typer.Option("--scale", help="tiny, small or real.")] = None,
    results: Annotated[
        Path | None,
        typer.Option(
            "--results",
            help="Keep the results and plots here (default: ./demo-results/<UTC time>, "
            "or <workdir>/results).",
        ),
    ] = None,
) -> None:
    """Run the pipeline on simulated data with an embedded server (the README's first command).

    While it runs, the web console is served on loopback (the demo prints its address); the
    results and plots are kept after it ends."""
    from dataclasses import replace

    from dsa110d.demo import QUICK, DemoPlan, run_demo

    plan = QUICK if quick else DemoPlan()
    plan = replace(
        plan,
        days=days or plan.days,
        sets_per_day=sets or plan.sets_per_day,
        speed=speed or plan.speed,
        scale=scale or plan.scale,
    )
    raise typer.Exit(run_demo(workdir, plan, results))


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the subband files to.")],
    start: Annotated[str, typer.Option("--start", help="UTC start of the first set (ISO).")],
    sets: Annotated[int, typer.Option("--sets", help="Sets (~309 s each) per day.")],
    days: Annotated[int, typer.Option("--days", help="Repeat on this many sidereal days.")] = 1,
    scale: Annotated[str, typer.Option("--scale", help="real, small or tiny.")] = "small",
    subbands: Annotated[int, typer.Option("--subbands", help="Subbands per set (1..16).")] = 16,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same files).")] = 0,
    catalog: Annotated[
        Path | None, typer.Option("--catalog", help="Sky CSV (id,ra_deg,dec_deg,flux_jy).")
    ] = None,
    variable_fraction: Annotated[
        float, typer.Option("--variable-fraction", help="Share of sources that vary.")
    ] = 0.1,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Truth JSON (default OUT/truth.json).")
    ] = None,
    dec: Annotated[
        float | None, typer.Option("--dec", help="Pointing declination, deg (default zenith).")
    ] = None,
    live: Annotated[bool, typer.Option("--live", help="Land sets in real time.")] = False,
    speed: Annotated[
        float, typer.Option("--speed", help="Live mode: time runs X times faster.")
    ] = 1.0,
    beam: Annotated[
        str, typer.Option("--beam", help="Truth beam: tapered (the instrument's) or airy.")
    ] = "tapered",
    catalog_error: Annotated[
        float,
        typer.Option(
            "--catalog-error",
            help="Catalog position error (sigma per coordinate, arcsec) of OUT/catalog.csv.",
        ),
    ] = 0.0,
    corrupt: Annotated[
        str | None,
        typer.Option(
            "--corrupt",
            help="none, gains or all: what the instrument and the site do to the data "
            "(default: all for --scale real, none otherwise).",
        ),
    ] = None,
) -> None:
    """Write simulated DSA-110 subband files (UVH5) laid out as the real correlator's."""
    from dsa110d.science.simulation.simulate import DEFAULT_DEC_DEG, SimulationSpec
    from dsa110d.science.simulation.simulate import simulate as run_simulation

    try:
        moment = datetime.fromisoformat(start)
    except ValueError:
        fail(f"--start: {start!r} is not an ISO date-time (e.g. 2026-01-01T00:00:00)", code=2)
    spec = SimulationSpec(
        out=out, start=moment, sets=sets, days=days, scale=scale, n_subbands=subbands,
        seed=seed, catalog=catalog, variable_fraction=variable_fraction, truth=truth,
        live=live, speed=speed, dec_deg=DEFAULT_DEC_DEG if dec is None else dec,
        corrupt=corrupt, beam=beam, catalog_error_arcsec=catalog_error,
    )  # fmt: skip
    try:
        result = run_simulation(spec)
    except ValueError as exc:
        if isinstance(exc, DSA110Error):
            raise
        fail(str(exc), code=2)
    print(
        f"wrote {len(result.files)} files ({result.bytes_written / 1e6:.1f} MB) for "
        f"{len(result.set_ids)} sets in {result.seconds:.1f} s; truth: {result.truth_path}"
    )


@app.command()
def convert(
    files: Annotated[list[Path], typer.Argument(help="The subband files (UVH5) of one set.")],
    out: Annotated[Path, typer.Option("--out", help="The Measurement Set to write.")],
    partial: Annotated[
        bool, typer.Option("--partial", help="Convert an incomplete set; missing subbands flagged.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Convert one subband set into one Measurement Set (atomically; an existing complete MS
    is left as it is)."""
    import json

    from dsa110d.science.conversion.convert import convert_set

    result = convert_set(files, out, partial=partial)
    if json_out:
        print(json.dumps(result.to_dict()))
        return
    verb = "exists" if result.reused else f"written in {result.seconds:.1f} s"
    flagged = (
        f", missing subbands {list(result.missing_subbands)} flagged"
        if result.missing_subbands
        else ""
    )
    print(
        f"{result.ms}: {verb}; {result.n_rows} rows ({result.n_times} integrations x "
        f"{result.n_baselines} baselines), {result.n_channels} channels{flagged}"
    )


def main() -> None:
    run_app(app, "dsa110d")
