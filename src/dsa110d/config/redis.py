"""``redis.*``: the state server, its TLS and Sentinel, and how writes are acknowledged."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, model_validator

from dsa110d.config.section import (
    NonNegativeFloat,
    Port,
    PositiveFloat,
    PositiveInt,
    Section,
    read_secret,
)

__all__ = ["RedisConfig", "SentinelConfig", "TLSConfig"]


class TLSConfig(Section):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    verify: bool = True


class SentinelConfig(Section):
    master_name: str | None = None
    addresses: list[str] = []
    # The sentinels' own credentials (sentinel.conf ``requirepass``), which may differ from the
    # master's; the sentinels speak TLS when ``redis.tls.enabled``, with the same files.
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None

    def secret_password(self) -> str | None:
        """The sentinels' password, from ``password`` or else from ``password_file``."""
        return read_secret(self.password, self.password_file, "redis.sentinel.password_file")

    @model_validator(mode="after")
    def _addresses_are_host_port(self) -> SentinelConfig:
        for address in self.addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"sentinel address {address!r} is not host:port")
        if self.addresses and not self.master_name:
            raise ValueError("sentinel addresses are set but master_name is empty")
        return self


class RedisConfig(Section):
    host: str = "127.0.0.1"
    port: Port = 6379
    db: Annotated[int, Field(ge=0)] = 0
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    url: SecretStr | None = None  # may carry a password
    max_connections: PositiveInt = 32
    socket_timeout: PositiveFloat = 5.0
    socket_connect_timeout: PositiveFloat = 5.0
    retry_on_timeout: bool = True
    health_check_interval: NonNegativeFloat = 30
    namespace: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] = "dsa110"
    embedded: bool = False
    embedded_port: Annotated[int, Field(ge=0, le=65535)] = 0
    tls: TLSConfig = TLSConfig()
    sentinel: SentinelConfig = SentinelConfig()
    # Acknowledged writes wait (WAIT) for this many replicas; None: 1 with Sentinel, else 0.
    wait_replicas: Annotated[int, Field(ge=0)] | None = None
    wait_timeout_ms: PositiveInt = 1000

    def acked_replicas(self) -> int:
        """How many replicas must hold an acknowledged write before it counts as done."""
        if self.wait_replicas is not None:
            return self.wait_replicas
        return 1 if self.sentinel.addresses else 0

    def secret_password(self) -> str | None:
        """The password, from ``password`` or else from ``password_file``."""
        return read_secret(self.password, self.password_file, "redis.password_file")
