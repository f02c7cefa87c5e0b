"""The console's ASGI application (Starlette): the JSON API, the pages, the vendored static
files and the published result files, behind :class:`~dsa110d.web.security.SecurityMiddleware`.

Starlette because it is an ASGI toolkit built on anyio, like the daemon: its handlers run in the
daemon's own event loop beside the services, with nothing to translate. It has no templating or
plotting of its own to vendor; Jinja2 renders the pages and uPlot (one vendored file) plots.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dsa110d.config import Config
from dsa110d.errors import (
    BadRequestError,
    ConfigError,
    DSA110Error,
    MessageError,
    NotFoundError,
    ServerUnavailableError,
    describe,
)
from dsa110d.operations import results
from dsa110d.web import api, pages
from dsa110d.web.security import SecurityMiddleware

ConfigSource = Callable[[], Config]
STATIC_DIR = Path(str(files("dsa110d.web") / "static"))
INLINE_KINDS = frozenset({"PNG", "JSON"})
"""Result files a browser may show in place; the others are downloads."""


def status_of(exc: DSA110Error) -> int:
    """Whose fault: the request's (400), nothing there (404), the state server's (503)."""
    if isinstance(exc, NotFoundError | LookupError):
        return 404
    if isinstance(exc, BadRequestError | ConfigError | MessageError):
        return 400
    if isinstance(exc, ServerUnavailableError):
        return 503
    return 500


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class StrictJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        try:  # the common case, without walking the content twice
            text = json.dumps(content, allow_nan=False, separators=(",", ":"), default=str)
        except ValueError:
            text = json.dumps(_clean(content), allow_nan=False, separators=(",", ":"), default=str)
        return text.encode()


def _no_store(response: Response) -> Response:
    response.headers["cache-control"] = "no-store"
    return response


class Console:
    """The console's handlers, over the configuration ``config()`` returns (re-read per
    request: a SIGHUP reload applies at once)."""

    def __init__(self, config: ConfigSource) -> None:
        self.config = config
        self.templates = pages.environment()

    def api_route(self, endpoint: api.Endpoint) -> Route:
        async def handle(request: Request) -> Response:
            try:
                data = await endpoint.handler(
                    self.config(), dict(request.query_params), dict(request.path_params)
                )
            except DSA110Error as exc:
                return _no_store(StrictJSON({"error": describe(exc)}, status_code=status_of(exc)))
            return _no_store(StrictJSON(data))

        return Route(api.API_PREFIX + endpoint.path, handle, methods=["GET"], name=endpoint.name)

    async def openapi(self, request: Request) -> Response:
        return StrictJSON(api.openapi())

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> Response:
        cfg = self.config()
        body = self.templates.get_template(template).render(
            path=request.url.path,
            refresh_ms=int(cfg.services.web.refresh_sec * 1000),
            namespace=cfg.redis.namespace,
            env=cfg.env,
            pages=pages,
            **context,
        )
        return _no_store(HTMLResponse(body, status_code=status_code))

    async def fetch(self, handler: api.Handler, request: Request, **path: str) -> tuple[Any, str]:
        """An API handler's data for a page, or (None, the one-line error)."""
        try:
            return await handler(self.config(), dict(request.query_params), path), ""
        except DSA110Error as exc:
            return None, describe(exc)

    async def overview_page(self, request: Request) -> Response:
        data, error = await self.fetch(api.get_overview, request)
        return self.render(request, "overview.html", data=data, error=error)

    async def sets_page(self, request: Request) -> Response:
        rows, error = await self.fetch(api.get_sets, request)
        return self.render(request, "sets.html", rows=rows or [], error=error)

    async def blocks_page(self, request: Request) -> Response:
        rows, error = await self.fetch(api.get_blocks, request)
        return self.render(request, "blocks.html", rows=rows or [], error=error)

    async def dead_letters_page(self, request: Request) -> Response:
        data, error = await self.fetch(api.get_dead_letters, request)
        return self.render(request, "dead_letters.html", data=data, error=error)

    async def candidates_page(self, request: Request) -> Response:
        data, error = await self.fetch(api.get_candidates, request)
        runs, runs_error = await self.fetch(api.get_analysis, request)
        return self.render(request, "candidates.html", data=data, runs=runs,
                           error=error or runs_error)  # fmt: skip

    async def source_page(self, request: Request) -> Response:
        source_id = request.path_params["source_id"]
        try:
            results.check_source_id(source_id)
        except DSA110Error as exc:
            return self.render(request, "error.html", 400, error=describe(exc))
        report, error = await self.fetch(api.get_candidates, request)
        curve, _ = await self.fetch(api.get_light_curve, request, source_id=source_id)
        listed = (report or {}).get("candidates", [])
        candidate = next((c for c in listed if str(c.get("source_id")) == source_id), None)
        return self.render(request, "source.html", source_id=source_id, candidate=candidate,
                           curve=curve, error=error)  # fmt: skip

    async def files_page(self, request: Request) -> Response:
        rows, error = await self.fetch(api.get_files, request)
        return self.render(request, "files.html", rows=rows or [], error=error)

    async def result_file(self, request: Request) -> Response:
        try:
            path = results.result_file(self.config(), request.path_params["path"])
        except DSA110Error as exc:
            return Response(describe(exc) + "\n", status_of(exc), media_type="text/plain")
        kind = results.FILE_KINDS.get(path.suffix.lower())
        if kind is None:
            return Response("not a published result kind\n", 404, media_type="text/plain")
        media = {"PNG": "image/png", "JSON": "application/json"}.get(
            kind, "application/octet-stream"
        )
        disposition = "inline" if kind in INLINE_KINDS else "attachment"
        return FileResponse(path, media_type=media, filename=path.name,
                            content_disposition_type=disposition)  # fmt: skip

    async def favicon(self, request: Request) -> Response:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    async def not_found(self, request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(api.API_PREFIX):
            return StrictJSON({"error": f"no endpoint {request.url.path[:80]}"}, status_code=404)
        return self.render(request, "error.html", 404, error=f"no page {request.url.path[:80]}")

    def routes(self) -> list[Route | Mount]:
        return [
            *(self.api_route(e) for e in api.ENDPOINTS),
            Route(api.API_PREFIX + "/openapi.json", self.openapi, methods=["GET"]),
            Route("/", self.overview_page, methods=["GET"]),
            Route("/sets", self.sets_page, methods=["GET"]),
            Route("/blocks", self.blocks_page, methods=["GET"]),
            Route("/dead-letters", self.dead_letters_page, methods=["GET"]),
            Route("/candidates", self.candidates_page, methods=["GET"]),
            Route("/sources/{source_id}", self.source_page, methods=["GET"]),
            Route("/files", self.files_page, methods=["GET"]),
            Route("/favicon.ico", self.favicon, methods=["GET"]),
            Route("/files/{path:path}", self.result_file, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ]


def create_app(config: ConfigSource, token: str | None = None) -> SecurityMiddleware:
    """The console for the configuration ``config()`` returns, behind the security layer."""
    console = Console(config)
    app = Starlette(routes=console.routes(), exception_handlers={404: console.not_found})
    return SecurityMiddleware(app, token)
