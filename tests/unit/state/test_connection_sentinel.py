"""Sentinel connections take their own credentials and the TLS settings."""

from __future__ import annotations

from pathlib import Path

from dsa110d.config import Config
from dsa110d.state.connection import client_for


def test_sentinels_get_their_own_password_and_the_tls_files(tmp_path: Path) -> None:
    (tmp_path / "sentinel.pw").write_text("s3cret\n")
    config = Config.model_validate(
        {
            "redis": {
                "password": "data-pw",
                "tls": {"enabled": True, "ca_file": str(tmp_path / "ca.pem")},
                "sentinel": {
                    "master_name": "dsa110",
                    "addresses": ["10.0.0.1:26379", "10.0.0.2:26379"],
                    "username": "watcher",
                    "password_file": str(tmp_path / "sentinel.pw"),
                },
            }
        }
    )
    client = client_for(config)
    pool = client.connection_pool
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs  # type: ignore[attr-defined]
    assert (sentinel["username"], sentinel["password"]) == ("watcher", "s3cret")
    assert sentinel["ssl_ca_certs"] == str(tmp_path / "ca.pem")
    master = pool.connection_kwargs
    assert (master["password"], master["ssl_ca_certs"]) == ("data-pw", str(tmp_path / "ca.pem"))


def test_with_sentinel_acknowledged_writes_wait_for_one_replica_by_default() -> None:
    sentinel = {"master_name": "m", "addresses": ["127.0.0.1:26379"]}
    assert Config.model_validate({"redis": {"sentinel": sentinel}}).redis.acked_replicas() == 1
    assert Config().redis.acked_replicas() == 0
    explicit = {"sentinel": sentinel, "wait_replicas": 2}
    assert Config.model_validate({"redis": explicit}).redis.acked_replicas() == 2


def test_the_sentinel_password_is_redacted() -> None:
    sentinel = {"master_name": "m", "addresses": ["127.0.0.1:26379"], "password": "s3cret"}
    shown = Config.model_validate({"redis": {"sentinel": sentinel}}).redacted()
    assert shown["redis"]["sentinel"]["password"] == "***"
