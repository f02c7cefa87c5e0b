"""A password in the Redis URL's query string is as secret as one in its userinfo."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from dsa110d import logs
from dsa110d.config import load_config, redact_url
from dsa110d.state.connection import client_for, describe_target

QUERY_URL = "redis://db.example:6379/0?db=0&password=qu%3Ary-s3cret"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    for handler in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(handler)
        handler.close()


def test_redact_url_hides_the_query_string_password() -> None:
    assert redact_url(QUERY_URL) == "redis://db.example:6379/0?db=0&password=***"
    assert (
        redact_url("unix:///run/v.sock?password=x1&db=2") == "unix:///run/v.sock?password=***&db=2"
    )
    assert redact_url("redis://u:pw@h:1/0?password=x") == "redis://u:***@h:1/0?password=***"


def test_the_query_string_password_never_reaches_the_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = load_config(None, "production", {"DSA110__REDIS__URL": QUERY_URL})
    client_for(config)  # registers the URL's secrets; connects to nothing yet
    assert "s3cret" not in describe_target(config)
    logs.configure("INFO", "json", environ={})
    logs.get_logger("dsa110d.test").warning(
        "cannot connect", url=QUERY_URL, detail="password qu:ry-s3cret refused"
    )
    out = capsys.readouterr().out
    record = json.loads(out.splitlines()[-1])
    assert "s3cret" not in out
    assert record["url"].endswith("password=***")
