"""Fuzz of the alert delivery boundary: whatever ``alerts.webhook.url`` is and whatever the
endpoint answers, one delivery ends as sent or as one undelivered alert, never an exception,
and the URL's token is in no log line. Only loopback is ever contacted: a URL that would
pass the check is pointed at a local server that answers garbage."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import SecretStr

from dsa110d.alerts.sinks import AlertSinks, WebhookURLError, check_webhook_url
from dsa110d.config import AlertsConfig, WebhookConfig
from dsa110d.state.alerts import AlertEvent
from tests.fuzzkit import fuzz_settings, one_line
from tests.integration.alerts.sinkservers import GarbageServer

TOKEN = "tok-SECRET-4f2a"
EVENT = AlertEvent("disk:/data", "fire", "disk_free", "critical", "disk full", 1.0, 1.0)


@pytest.fixture(scope="module")
def garbage() -> Iterator[GarbageServer]:
    server = GarbageServer()
    yield server
    server.close()


def _sinks(url: str) -> AlertSinks:
    hook = WebhookConfig(url=SecretStr(url), max_attempts=1, timeout_sec=2)
    return AlertSinks(lambda: AlertsConfig(webhook=hook))


async def _deliver_once(url: str) -> tuple[AlertSinks, list[MutableMapping[str, Any]]]:
    sinks = _sinks(url)
    with structlog.testing.capture_logs() as logs:
        await sinks._deliver("webhook", sinks._to_webhook, EVENT)
    return sinks, logs


def _rejected(url: str) -> bool:
    try:
        check_webhook_url(url)
    except WebhookURLError:
        return True
    return False


@pytest.mark.anyio
@fuzz_settings(1000)
@given(text=st.text(max_size=60))
async def test_a_url_that_cannot_be_posted_to_is_one_undelivered_alert(text: str) -> None:
    url = f"{text}/{TOKEN}"
    assume(_rejected(url))  # never contacts anything
    sinks, logs = await _deliver_once(url)
    assert sinks.undelivered["webhook"] == 1 and sinks.sent["webhook"] == 0
    (line,) = [entry for entry in logs if entry["event"] == "alert_webhook_failed"]
    assert one_line(str(line["error"])) and TOKEN not in str(logs)


@pytest.mark.anyio
@fuzz_settings(200)
@given(path=st.text(max_size=30), query=st.text(max_size=20))
async def test_an_endpoint_answering_garbage_is_one_undelivered_alert(
    garbage: GarbageServer, path: str, query: str
) -> None:
    url = f"http://127.0.0.1:{garbage.port}/{TOKEN}/{path}?{urllib.parse.quote(query)}"
    sinks, logs = await _deliver_once(url)
    assert sinks.undelivered["webhook"] == 1 and sinks.sent["webhook"] == 0
    assert all(one_line(str(entry.get("error", "x"))) for entry in logs)
    assert TOKEN not in str(logs)
