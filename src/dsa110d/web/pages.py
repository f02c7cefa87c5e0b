"""The console's pages: server-rendered (Jinja2, autoescaped) from the same API handlers, then
kept fresh by ``static/console.js`` polling the API (no reload, no build step).

A table is described once here (:class:`Column`): the template renders its first rows and the
script re-renders them from the API with the same keys and formats, always as text, so no
string from the pipeline (a file name, a reason, a source id) is ever parsed as markup.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2

SUBSTITUTE = "-"
WHOLE_LIMIT = 1e15
"""Whole numbers below this show every digit (a count), others three significant digits."""


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    fmt: str = "text"
    """``text``, ``num`` (3 significant digits), ``int``, ``time`` (epoch s, UTC), ``age``
    (seconds), ``list``, ``json`` (key: value), ``qa`` (stage: key value per stage)."""
    link: str = ""
    """A link for the cell: a template like ``/sources/{source_id}`` (each value URL-encoded)."""


def fmt(value: Any, kind: str) -> str:
    """A cell's text (console.js's ``format`` does the same in the browser)."""
    if value is None or value == "":
        return SUBSTITUTE
    formatter = _FORMATTERS.get(kind)
    return formatter(value) if formatter is not None else str(value)


def _num(value: Any) -> str:
    if not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return SUBSTITUTE
    if float(value).is_integer() and abs(value) < WHOLE_LIMIT:
        return str(int(value))  # counts stay whole, as the browser shows them
    return f"{value:.3g}"


def _int(value: Any) -> str:
    return str(int(value)) if isinstance(value, int | float) else str(value)


def _time(value: Any) -> str:
    if not isinstance(value, int | float):
        return str(value)
    if value <= 0:
        return SUBSTITUTE
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(value: Any) -> str:
    return duration(float(value)) if isinstance(value, int | float) else str(value)


def _list(value: Any) -> str:
    if not isinstance(value, list | tuple):
        return str(value)
    return ", ".join(str(v) for v in value) or SUBSTITUTE


def _json(value: Any) -> str:
    if not isinstance(value, dict):
        return str(value)
    return ", ".join(f"{k}: {v}" for k, v in value.items()) or SUBSTITUTE


def _qa(value: Any) -> str:
    if not isinstance(value, dict):
        return str(value)
    return (
        "; ".join(
            f"{stage}: " + ", ".join(f"{k} {fmt(v, 'num')}" for k, v in summary.items())
            for stage, summary in value.items()
            if isinstance(summary, dict) and summary
        )
        or SUBSTITUTE
    )


_FORMATTERS: dict[str, Callable[[Any], str]] = {
    "num": _num, "int": _int, "time": _time, "age": _age, "list": _list, "json": _json,
    "qa": _qa,
}  # fmt: skip


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
    return f"{seconds // 86400:.0f} d {seconds % 86400 // 3600:.0f} h"


def link(template: str, row: dict[str, Any]) -> str:
    from urllib.parse import quote

    out = template
    for key, value in row.items():
        out = out.replace("{" + key + "}", quote(str(value), safe="/"))
    return out


SERVICES = (
    Column("host", "host"),
    Column("service", "service"),
    Column("pid", "pid", "int"),
    Column("state", "state"),
    Column("health", "health"),
    Column("reason", "reason"),
    Column("uptime_sec", "up", "age"),
    Column("heartbeat_age_sec", "heartbeat", "age"),
    Column("processed", "processed", "int"),
    Column("failed", "failed", "int"),
    Column("queue_lag_sec", "lag", "age"),
    Column("backlog", "backlog", "int"),
    Column("restarts", "restarts", "int"),
)
QUEUES = (
    Column("message_type", "type"),
    Column("group", "group"),
    Column("length", "length", "int"),
    Column("pending", "pending", "int"),
    Column("undelivered", "undelivered", "int"),
    Column("consumers_alive", "consumers alive", "int"),
    Column("oldest_pending_age_sec", "oldest pending", "age"),
    Column("dead_letters", "dead letters", "int"),
)
ALERTS = (
    Column("status", "status"),
    Column("severity", "severity"),
    Column("since", "since", "time"),
    Column("rule", "rule"),
    Column("summary", "summary"),
)
SETS = (
    Column("set_id", "set"),
    Column("state", "state"),
    Column("subbands", "subbands", "int"),
    Column("expected", "expected", "int"),
    Column("missing", "missing", "list"),
    Column("attempts", "attempts", "int"),
    Column("last_error", "last error"),
    Column("first_seen", "first seen", "time"),
)
BLOCKS = (
    Column("block_id", "block"),
    Column("start", "start", "time"),
    Column("end", "end", "time"),
    Column("state", "state"),
    Column("version", "version", "int"),
    Column("chunks", "chunks", "int"),
    Column("missing_slots", "missing slots", "list"),
    Column("attempts", "attempts", "int"),
    Column("error", "error"),
    Column("results", "results", "json"),
    Column("qa", "QA", "qa"),
)
DEAD_REASONS = (
    Column("message_type", "type"),
    Column("reason", "reason"),
    Column("count", "count", "int"),
)
DEAD_LETTERS = (
    Column("message_type", "type"),
    Column("dead_id", "id"),
    Column("dead_at", "dead at", "time"),
    Column("consumer", "consumer"),
    Column("reason", "reason"),
)
CANDIDATES = (
    Column("rank", "rank", "int"),
    Column("source_id", "source", link="/sources/{source_id}"),
    Column("class", "class"),
    Column("ra_deg", "RA (deg)", "num"),
    Column("dec_deg", "Dec (deg)", "num"),
    Column("n", "n", "int"),
    Column("mean_flux_jy", "mean flux (Jy)", "num"),
    Column("v", "V", "num"),
    Column("eta", "eta", "num"),
    Column("p_constant", "p(constant)", "num"),
)
FILES = (
    Column("path", "file", link="/files/{path}"),
    Column("kind", "kind"),
    Column("size", "bytes", "int"),
    Column("modified", "modified", "time"),
)
ANALYSIS_RUNS = (
    Column("run", "run"),
    Column("candidates", "candidates", "int"),
    Column("file", "file", link="/files/{file}"),
)

NAV = (
    ("/", "overview"),
    ("/sets", "sets"),
    ("/blocks", "blocks"),
    ("/dead-letters", "dead letters"),
    ("/candidates", "candidates"),
    ("/files", "files"),
)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dsa110d.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(fmt=fmt, link=link, nav=NAV)
    return env
