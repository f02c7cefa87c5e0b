"""What makes the console safe by default: read-only methods, a bearer token beyond loopback,
and response headers that forbid everything the pages do not need.

* Only GET and HEAD exist: anything else is 405, so no request can change the pipeline.
* When ``services.web.token_file`` is set, a client that is not on loopback must send
  ``Authorization: Bearer <token>``, or the cookie a browser gets by opening any page once
  with ``?token=<token>`` (HttpOnly, SameSite=Strict). Loopback clients are the host's own
  operators and need no token.
* Every response carries a strict Content-Security-Policy (scripts, styles and data from this
  server only, no inline script, no framing), ``nosniff`` and no referrer.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dsa110d.errors import ConfigError

TOKEN_COOKIE = "dsa110_token"  # noqa: S105 - a cookie name
TOKEN_PARAM = "token"  # noqa: S105 - a query parameter name
READ_METHODS = frozenset({"GET", "HEAD"})
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
MIN_TOKEN_CHARS = 16
TOKEN_CHARS = re.compile(rf"[A-Za-z0-9._~+/=-]{{{MIN_TOKEN_CHARS},}}")
"""What a token may hold: it travels in a header and a cookie, unquoted."""


def read_token(path: Path | None) -> str | None:
    """The bearer token from its file (first line, stripped); a short one is refused."""
    if path is None:
        return None
    try:
        lines = path.read_text().strip().splitlines()
    except OSError as exc:
        raise ConfigError(f"services.web.token_file: cannot read {path}: {exc.strerror}") from None
    token = lines[0].strip() if lines else ""
    if not TOKEN_CHARS.fullmatch(token):
        raise ConfigError(
            f"services.web.token_file: {path} must hold one token of at least "
            f"{MIN_TOKEN_CHARS} letters, digits or ._~+/=-"
        )
    return token


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


class SecurityMiddleware:
    """Read-only methods, the token check and the security headers (pure ASGI: cheap)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                message = {**message, "headers": headers}
            await send(message)

        if scope["method"] not in READ_METHODS:
            await _plain(
                send_with_headers, 405, "read-only: only GET and HEAD", [(b"allow", b"GET, HEAD")]
            )
            return
        if self.token is not None and not is_loopback((scope.get("client") or (None,))[0]):
            offered = _offered_token(scope)
            if offered is None or not hmac.compare_digest(offered.encode(), self.token.encode()):
                await _plain(
                    send_with_headers,
                    401,
                    "a bearer token is required (Authorization: Bearer, or open ?token=...)",
                    [(b"www-authenticate", b'Bearer realm="dsa110d"')],
                )
                return
            if _query_token(scope) is not None:
                await _set_cookie_and_redirect(scope, send_with_headers, offered)
                return
        await self.app(scope, receive, send_with_headers)


def _query_token(scope: Scope) -> str | None:
    for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        if key == TOKEN_PARAM:
            return str(value)
    return None


def _offered_token(scope: Scope) -> str | None:
    headers = dict(scope.get("headers", []))
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return str(auth[7:].strip())
    cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
    if TOKEN_COOKIE in cookie:
        return str(cookie[TOKEN_COOKIE].value)
    return _query_token(scope)


async def _set_cookie_and_redirect(scope: Scope, send: Send, token: str) -> None:
    """Keep the token in a cookie and drop it from the address bar (and the history)."""
    kept = [
        (k, v)
        for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        if k != TOKEN_PARAM
    ]
    location = scope.get("path", "/") + (("?" + urlencode(kept)) if kept else "")
    cookie = f"{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode())],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _plain(
    send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = (text + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
