"""The daemon's own running: ``paths``, ``retry``, ``streams``, ``leases``, ``supervisor``,
``breakers``, ``metrics`` and ``logging``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from dsa110d.config.section import NonNegativeFloat, Port, PositiveFloat, PositiveInt, Section

__all__ = [
    "BreakersConfig",
    "LeasesConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PathsConfig",
    "RetryConfig",
    "StreamsConfig",
    "SupervisorConfig",
]


class PathsConfig(Section):
    incoming_dir: Path = Path("/data/incoming")
    ms_dir: Path = Path("/data/ms")
    results_dir: Path = Path("/data/results")
    processed_dir: Path = Path("/data/processed")
    state_dir: Path = Path("/var/lib/dsa110")
    log_dir: Path = Path("/var/log/dsa110")
    catalog: Path | None = None

    def data_roots(self) -> tuple[Path, ...]:
        """The directories that a message's paths may point into."""
        return (self.incoming_dir, self.ms_dir, self.results_dir)


class RetryConfig(Section):
    max_attempts: PositiveInt = 5
    base_delay_sec: PositiveFloat = 1.0
    max_delay_sec: PositiveFloat = 60.0

    @model_validator(mode="after")
    def _cap_above_base(self) -> RetryConfig:
        if self.max_delay_sec < self.base_delay_sec:
            raise ValueError("max_delay_sec must be at least base_delay_sec")
        return self


class StreamsConfig(Section):
    heartbeat_interval_sec: PositiveFloat = 5
    heartbeat_ttl_sec: PositiveFloat = 20
    read_block_ms: PositiveInt = 4000
    max_entry_bytes: PositiveInt = 65536
    retention_sec: PositiveFloat = 7 * 86400

    @model_validator(mode="after")
    def _ttl_above_interval(self) -> StreamsConfig:
        if self.heartbeat_ttl_sec <= self.heartbeat_interval_sec:
            raise ValueError("heartbeat_ttl_sec must be greater than heartbeat_interval_sec")
        return self


class LeasesConfig(Section):
    ttl_sec: PositiveFloat = 30
    renew_interval_sec: PositiveFloat = 10

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> LeasesConfig:
        if self.renew_interval_sec >= self.ttl_sec:
            raise ValueError("renew_interval_sec must be less than ttl_sec")
        return self


class SupervisorConfig(Section):
    max_restarts: PositiveInt = 5
    window_sec: PositiveFloat = 60
    restart_base_delay_sec: PositiveFloat = 0.5
    restart_max_delay_sec: PositiveFloat = 30
    shutdown_grace_sec: NonNegativeFloat = 30
    heartbeat_interval_sec: PositiveFloat = 5
    registry_ttl_sec: PositiveFloat = 30
    workers: Annotated[int, Field(ge=0)] = 0  # 0: one per core
    worker_idle_sec: NonNegativeFloat = 300  # a worker retires after this idle; 0: never
    backlog_degraded: PositiveInt = 50


class BreakersConfig(Section):
    failure_threshold: PositiveInt = 5
    reset_timeout_sec: PositiveFloat = 30


class MetricsConfig(Section):
    port: Port | None = None
    host: str = "127.0.0.1"


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"
    file: bool = False
