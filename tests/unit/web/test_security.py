"""The console's safety by default, at the ASGI boundary with the real application: read-only
methods, the bearer token beyond loopback (header or cookie), the headers on every answer."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from dsa110d.config import Config
from dsa110d.errors import ConfigError
from dsa110d.web.app import create_app
from dsa110d.web.security import (
    CONTENT_SECURITY_POLICY,
    TOKEN_COOKIE,
    is_loopback,
    read_token,
)

pytestmark = pytest.mark.unit
TOKEN = "s3cret-token-0123456789"
REMOTE = ("192.0.2.10", 50000)
LOCAL = ("127.0.0.1", 50000)


def call(
    path: str,
    client: tuple[str, int],
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    query: str = "",
    token: str | None = TOKEN,
) -> tuple[int, dict[str, str], bytes]:
    """One request through the ASGI application, as Hypercorn would make it."""
    app = create_app(lambda: Config(), token)
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "client": client, "server": ("127.0.0.1", 8110),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }  # fmt: skip
    sent: list[MutableMapping[str, Any]] = []
    requested = False

    async def main() -> None:
        done = anyio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()  # the client hangs up once the answer is complete
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        with anyio.fail_after(10):
            await app(scope, receive, send)

    anyio.run(main)
    start = sent[0]
    head = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], head, body


def test_loopback_needs_no_token_and_every_answer_carries_the_headers() -> None:
    status, headers, _ = call("/static/console.js", LOCAL)
    assert status == 200
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


def test_beyond_loopback_the_token_is_required() -> None:
    status, headers, body = call("/static/console.js", REMOTE)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert b"bearer token" in body
    assert call("/static/console.js", REMOTE, headers={"Authorization": "Bearer nope"})[0] == 401
    ok = call("/static/console.js", REMOTE, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok[0] == 200
    by_cookie = call("/static/console.js", REMOTE, headers={"Cookie": f"{TOKEN_COOKIE}={TOKEN}"})
    assert by_cookie[0] == 200


def test_a_token_in_the_address_becomes_a_cookie_and_leaves_the_address() -> None:
    status, headers, _ = call("/sets", REMOTE, query=f"token={TOKEN}&state=failed")
    assert status == 303
    assert headers["location"] == "/sets?state=failed"
    assert headers["set-cookie"].startswith(f"{TOKEN_COOKIE}={TOKEN};")
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]


def test_without_a_token_file_no_client_is_asked_for_one() -> None:
    assert call("/static/console.js", REMOTE, token=None)[0] == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_nothing_but_reads(method: str) -> None:
    status, headers, _ = call("/api/v1/sets", LOCAL, method=method)
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_the_token_file(tmp_path: Path) -> None:
    good = tmp_path / "token"
    good.write_text(TOKEN + "\n")
    assert read_token(good) == TOKEN
    assert read_token(None) is None
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match=r"services\.web\.token_file: .*short"):
        read_token(short)
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(tmp_path / "missing")
    spaced = tmp_path / "spaced"
    spaced.write_text("a token; with=separators\n")
    with pytest.raises(ConfigError):
        read_token(spaced)


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.3.4.5")
    assert not is_loopback("192.0.2.10") and not is_loopback(None) and not is_loopback("")
