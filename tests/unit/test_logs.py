"""Logging: JSON lines under systemd, context on every record, third-party loggers, secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsa110d import logs


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    logs.unbind("service", "set_id")
    for handler in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(handler)
        handler.close()


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_under_systemd_with_bound_context(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "auto", environ={"JOURNAL_STREAM": "8:1234"})
    logs.bind(service="watcher", set_id="2026-01-01T00:00:00")
    logs.get_logger("dsa110d.test").info("set complete", subbands=16)
    records = json_lines(capsys.readouterr().out)
    assert records[-1]["event"] == "set complete"
    assert records[-1]["service"] == "watcher"
    assert records[-1]["set_id"] == "2026-01-01T00:00:00"
    assert records[-1]["level"] == "info"
    assert records[-1]["subbands"] == 16


def test_third_party_loggers_share_the_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json", environ={})
    logging.getLogger("redis.connection").info("chatty detail")
    logging.getLogger("redis.connection").warning("reconnecting")
    records = json_lines(capsys.readouterr().out)
    assert [r["event"] for r in records] == ["reconnecting"]
    assert records[0]["logger"] == "redis.connection"


def test_level_from_environment(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json", environ={"DSA110_LOG_LEVEL": "DEBUG"})
    logs.get_logger("dsa110d.test").debug("detail")
    assert json_lines(capsys.readouterr().out)[-1]["event"] == "detail"


def test_secrets_never_reach_the_log(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    logs.register_secret("s3cr3t-pw")
    logs.configure("INFO", "json", log_file=tmp_path / "watcher.log", environ={})
    logs.get_logger("dsa110d.test").warning(
        "auth with s3cr3t-pw failed", url="redis://:s3cr3t-pw@h"
    )
    logging.getLogger("redis").error("password s3cr3t-pw rejected")
    out = capsys.readouterr().out + (tmp_path / "watcher.log").read_text()
    assert "s3cr3t-pw" not in out
    assert out.count("***") >= 3


def test_file_log_in_log_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "console", log_file=tmp_path / "logs" / "processor.log", environ={})
    logs.get_logger("dsa110d.test").info("hello")
    record = json_lines((tmp_path / "logs" / "processor.log").read_text())[-1]
    assert record["event"] == "hello"
    assert "hello" in capsys.readouterr().out


def test_secrets_never_reach_the_log_through_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.register_secret("tb-s3cr3t")
    logs.configure("INFO", "json", environ={})
    try:
        raise RuntimeError("AUTH dsa110 tb-s3cr3t refused")
    except RuntimeError:
        logs.get_logger("t").error("crashed", exc_info=True)
    out = capsys.readouterr().out
    assert "RuntimeError" in out
    assert "tb-s3cr3t" not in out


NESTED_CHAINS = 16
"""Chains of secrets, each holding the one before it (``s3cret`` in ``qu%3Ary-s3cret``)."""
NESTED_DEPTH = 8
"""Secrets per chain. Redacting in the secrets' set order (hash order, which changes with the
hash seed) leaves a chain's longest secret whole only when it happens to come first (1 in
NESTED_DEPTH); over all the chains, one order in 8**16 (~1e-14) would pass without the
longest-first rule, so the test fails without it whatever the hash seed."""


def test_a_secret_that_holds_a_shorter_one_is_redacted_whole(
    capsys: pytest.CaptureFixture[str],
) -> None:
    chains = [
        [f"{'p' * depth}q{chain:02d}-s3cret" for depth in range(NESTED_DEPTH)]
        for chain in range(NESTED_CHAINS)
    ]
    for chain in chains:
        for secret in chain:  # shortest first: e.g. another server's password, registered first
            logs.register_secret(secret)
    logs.register_secret("s3cret")
    logs.register_secret("qu%3Ary-s3cret")
    logs.configure("INFO", "json", environ={})
    logs.get_logger("dsa110d.test").warning(
        "cannot connect",
        url="redis://h/0?password=qu%3Ary-s3cret",
        passwords=" ".join(chain[-1] for chain in chains),
    )
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["url"] == "redis://h/0?password=***"
    assert record["passwords"] == " ".join(["***"] * NESTED_CHAINS)
