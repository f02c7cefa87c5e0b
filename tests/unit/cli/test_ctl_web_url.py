"""``dsa110ctl web-url`` says where the console is and whether a daemon serves it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsa110d.cli import ctl
from dsa110d.config import WebConfig

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]


def test_the_address_from_the_configuration() -> None:
    assert WebConfig().url == "http://127.0.0.1:8110/"
    assert WebConfig(host="0.0.0.0", port=9000).url == "http://127.0.0.1:9000/"
    assert WebConfig(host="::1").url == "http://[::1]:8110/"


def test_no_daemon_serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSA110__PATHS__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DSA110__SERVICES__WEB__PORT", "8999")
    config = str(REPO / "etc" / "dsa110" / "services.yaml")
    done = CliRunner().invoke(ctl.app, ["web-url", "--env", "testing", "--config", config])
    assert done.exit_code == 1
    assert done.output.splitlines() == [
        "http://127.0.0.1:8999/",
        "the console is off: set services.web.enabled: true, then dsa110ctl start web",
    ]
    monkeypatch.setenv("DSA110__SERVICES__WEB__ENABLED", "true")
    shown = CliRunner().invoke(
        ctl.app, ["web-url", "--json", "--env", "testing", "--config", config]
    )
    assert json.loads(shown.output) == {
        "url": "http://127.0.0.1:8999/", "api": "http://127.0.0.1:8999/api/v1/",
        "enabled": True, "serving_hosts": [],
    }  # fmt: skip
