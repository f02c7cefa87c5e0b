"""The read-only HTTP API: one table of endpoints, each a thin call into ``operations``.

The same table gives the routes (:mod:`dsa110d.web.app`) and the OpenAPI description
(:func:`openapi`), so the description cannot drift from what is served. Every endpoint answers
JSON; a :class:`~dsa110d.errors.DSA110Error` becomes ``{"error": "<one line>"}`` with a status
that says whose fault it is (400 the request's, 404 nothing there, 503 the state server's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio

from dsa110d import __version__
from dsa110d.alerts.report import alert_rows
from dsa110d.config import Config
from dsa110d.errors import BadRequestError
from dsa110d.operations import (
    calibration,
    fast_alerts,
    overview,
    queues,
    records,
    results,
    status,
)

API_PREFIX = "/api/v1"
MAX_LIMIT = 10_000
Query = Mapping[str, str]
Handler = Callable[[Config, Query, Mapping[str, str]], Awaitable[Any]]


@dataclass(frozen=True)
class Param:
    """A query (or path) parameter of an endpoint."""

    name: str
    description: str
    kind: str = "string"  # "string" or "integer"
    choices: tuple[str, ...] = ()
    default: Any = None
    where: str = "query"


@dataclass(frozen=True)
class Endpoint:
    path: str
    """Under :data:`API_PREFIX`; ``{name}`` for a path parameter."""
    name: str
    summary: str
    handler: Handler
    params: tuple[Param, ...] = ()
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})


def limit_of(query: Query, default: int) -> int:
    raw = query.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > MAX_LIMIT:
        raise BadRequestError(f"limit: {raw[:20]!r} is not a whole number up to {MAX_LIMIT}")
    return int(raw)


def choice_of(query: Query, name: str, choices: tuple[str, ...]) -> str | None:
    value = query.get(name) or None
    if value is not None and value not in choices:
        raise BadRequestError(f"{name}: {value[:40]!r} is not one of {', '.join(choices)}")
    return value


# --------------------------------------------------------------------------- handlers


async def get_health(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    rows = await status.service_status(config, fresh=False)
    return status.summarize(rows, status.registry_location(config)).to_dict()


async def get_status(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    return [r.to_dict() for r in await status.service_status(config, fresh=False)]


async def get_overview(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    return (await overview.overview(config)).to_dict()


async def get_queues(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    return [r.__dict__ for r in await queues.queue_stats(config)]


async def get_dead_letters(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    return (await queues.dead_letter_summary(config, limit_of(query, 100))).to_dict()


async def get_sets(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    state = choice_of(query, "state", records.SET_STATES)
    return [r.to_dict() for r in await records.list_sets(config, state, limit_of(query, 200))]


async def get_blocks(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    state = choice_of(query, "state", records.BLOCK_STATES)
    return [r.to_dict() for r in await records.list_blocks(config, state, limit_of(query, 200))]


async def get_analysis(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    return (await results.analysis_runs(config, limit_of(query, 50))).to_dict()


async def get_candidates(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    kind = choice_of(query, "class", records.CANDIDATE_CLASSES)
    report = await records.latest_candidates(config, kind)
    if report is None:
        return {"source": None, "run": None, "candidates": []}
    limit = limit_of(query, 0)
    data = report.to_dict()
    if limit:
        data["candidates"] = data["candidates"][:limit]
    return data


async def get_new_sources(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    found = await records.new_sources(config)
    limit = limit_of(query, 0)
    return {
        "new_sources": found.sources[:limit] if limit else found.sources,
        "unreadable": [asdict(u) for u in found.unreadable],
    }


async def get_fast_alerts(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    status = choice_of(query, "status", fast_alerts.STATUSES)
    return await fast_alerts.latest_fast_alerts(config, limit_of(query, 100) or 100, status)


async def get_light_curve(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    return await anyio.to_thread.run_sync(results.light_curve, config, path["source_id"])


async def get_eta_v(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    return await anyio.to_thread.run_sync(results.eta_v, config)


async def get_alerts(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    active = choice_of(query, "active", ("true", "false")) == "true"
    return await alert_rows(config, active)


async def get_files(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    under = query.get("under", "")
    rows = await anyio.to_thread.run_sync(
        results.result_files, config, under, limit_of(query, results.MAX_FILES)
    )
    return [r.to_dict() for r in rows]


async def get_cal(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    kind = choice_of(query, "kind", calibration.KINDS)
    state = choice_of(query, "status", calibration.STATUSES)
    return await calibration.list_solutions(config, kind, state, limit_of(query, 200))


async def get_cal_resolve(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    return await calibration.resolve(config, query.get("time") or "now")


async def get_version(config: Config, query: Query, path: Mapping[str, str]) -> Any:
    return {"version": __version__, "namespace": config.redis.namespace, "env": config.env}


LIMIT = Param("limit", "How many rows at most (0: all).", "integer")
ARRAY = {"type": "array", "items": {"type": "object"}}
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/version", "version", "The daemon's version, namespace and environment.",
             get_version, schema={"type": "object", "required": ["version"]}),
    Endpoint("/health", "health",
             "The pipeline's health: the worst service wins (as dsa110ctl health).", get_health,
             schema={"type": "object", "required": ["health", "reason", "services"],
                     "properties": {"health": {"enum": ["HEALTHY", "DEGRADED", "UNHEALTHY"]}}}),
    Endpoint("/status", "status", "Every service of every daemon on every host (as dsa110ctl "
             "status), from the registry as the last heartbeats left it.", get_status,
             schema=ARRAY),
    Endpoint("/overview", "overview", "The front page: services per host, lag, sets per hour, "
             "real-time factor, dead letters and alerts firing.", get_overview,
             schema={"type": "object",
                     "required": ["health", "hosts", "services", "queues", "lag_sec",
                                  "sets_per_hour", "real_time_factor", "alerts_firing",
                                  "dead_letters"]}),
    Endpoint("/queues", "queues", "Every stream per consumer group: length, pending, consumers, "
             "oldest pending age, dead letters (as dsa110ctl queues).", get_queues, schema=ARRAY),
    Endpoint("/dead-letters", "dead_letters", "Dead letters counted by type and reason, with the "
             "oldest of each type (as dsa110ctl dlq list).", get_dead_letters, (LIMIT,),
             schema={"type": "object", "required": ["total", "by_type", "by_reason", "letters"]}),
    Endpoint("/sets", "sets", "Set records, oldest first (as dsa110ctl sets).", get_sets,
             (Param("state", "Only sets in this state.", choices=records.SET_STATES), LIMIT),
             schema=ARRAY),
    Endpoint("/blocks", "blocks", "Block records with their results and QA, oldest first "
             "(as dsa110ctl blocks).", get_blocks,
             (Param("state", "Only blocks in this state.", choices=records.BLOCK_STATES), LIMIT),
             schema=ARRAY),
    Endpoint("/analysis", "analysis", "The variability analysis: what is pending, how the last "
             "run went, the runs published.", get_analysis, (LIMIT,),
             schema={"type": "object", "required": ["pending_blocks", "runs"]}),
    Endpoint("/candidates", "candidates", "The newest run's candidates, best first (as "
             "dsa110ctl candidates).", get_candidates,
             (Param("class", "Only this class.", choices=records.CANDIDATE_CLASSES), LIMIT),
             schema={"type": "object", "required": ["candidates"]}),
    Endpoint("/new-sources", "new_sources", "The blind search's new sources, monitored from "
             "their first-detection block, with the earlier mosaics' values and upper limits "
             "(as dsa110ctl candidates --new); unreadable: the entries too damaged to show, by "
             "candidate id.", get_new_sources, (LIMIT,),
             schema={"type": "object", "required": ["new_sources", "unreadable"]}),
    Endpoint("/fast-alerts", "fast_alerts", "Fast alerts: new sources in one chunk's image, "
             "newest first, pending or confirmed or retracted by the block's mosaic (as "
             "dsa110ctl fast-alerts).", get_fast_alerts,
             (Param("status", "Only this status.", choices=fast_alerts.STATUSES), LIMIT),
             schema=ARRAY),
    Endpoint("/sources/{source_id}/light-curve", "light_curve", "One source's light curve from "
             "the published photometry (newest version of each block).", get_light_curve,
             (Param("source_id", "The catalog's source id.", where="path"),),
             schema={"type": "object", "required": ["source_id", "mjd", "flux_jy"]}),
    Endpoint("/variability/eta-v", "eta_v", "Every source's eta and V of the newest run (the "
             "eta-V diagram).", get_eta_v,
             schema={"type": "object", "required": ["source_id", "eta", "v"]}),
    Endpoint("/alerts", "alerts", "Alerts, newest change first (as dsa110ctl alerts).",
             get_alerts, (Param("active", "Only alerts firing now.", choices=("true", "false")),),
             schema=ARRAY),
    Endpoint("/cal", "cal", "Calibration solutions, newest first, with their validity and QA "
             "(as dsa110ctl cal list).", get_cal,
             (Param("kind", "Only this kind.", choices=calibration.KINDS),
              Param("status", "Only solutions in this state.", choices=calibration.STATUSES),
              LIMIT), schema=ARRAY),
    Endpoint("/cal/resolve", "cal_resolve", "What applies at a time: the newest valid bandpass "
             "and the gains covering it (as dsa110ctl cal resolve).", get_cal_resolve,
             (Param("time", "An MJD, an ISO 8601 UTC time or now (the default)."),),
             schema={"type": "object", "required": ["mjd", "utc", "bandpass", "gains"]}),
    Endpoint("/files", "files", "Published files under the results directory (FITS, Parquet, "
             "VOTable, JSON, PNG), newest first; fetch one at /files/<path>.", get_files,
             (Param("under", "Only below this subdirectory (e.g. variability)."), LIMIT),
             schema=ARRAY),
)  # fmt: skip


def openapi(base_url: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 description of :data:`ENDPOINTS`."""
    error = {
        "description": "One line saying what is wrong.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                }
            }
        },
    }
    paths: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        parameters = []
        for p in endpoint.params:
            schema: dict[str, Any] = {"type": p.kind}
            if p.choices:
                schema["enum"] = list(p.choices)
            parameters.append(
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.where == "path",
                    "description": p.description,
                    "schema": schema,
                }
            )
        paths[API_PREFIX + endpoint.path] = {
            "get": {
                "operationId": endpoint.name,
                "summary": endpoint.summary,
                "parameters": parameters,
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": endpoint.schema}},
                    },
                    "400": error,
                    "401": {"description": "A bearer token is required beyond loopback."},
                    "404": error,
                    "503": error,
                },
            }
        }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "dsa110d console API",
            "version": __version__,
            "description": "Read-only: the pipeline's services, queues, dead letters, records, "
            "analysis runs, candidates, light curves and alerts.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if base_url:
        document["servers"] = [{"url": base_url}]
    return document
