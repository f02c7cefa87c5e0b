"""The effective configuration of one daemon (:class:`Config`: one field per section) and its
secrets: where they live (:data:`SECRET_PATHS`) and how they are hidden."""

from __future__ import annotations

import re
from typing import Any, Literal, get_args
from urllib.parse import unquote

from pydantic import BaseModel, SecretStr

from dsa110d.config.operations import AlertsConfig, HousekeepingConfig
from dsa110d.config.redis import RedisConfig
from dsa110d.config.runtime import (
    BreakersConfig,
    LeasesConfig,
    LoggingConfig,
    MetricsConfig,
    PathsConfig,
    RetryConfig,
    StreamsConfig,
    SupervisorConfig,
)
from dsa110d.config.science import (
    BeamConfig,
    CalibrationConfig,
    FlaggingConfig,
    ImagingConfig,
    PhotometryConfig,
    PipelineConfig,
)
from dsa110d.config.section import Section
from dsa110d.config.services import ServicesConfig

__all__ = ["SECRET_PATHS", "Config", "redact_url", "url_passwords"]


class Config(Section):
    """The effective configuration of one daemon."""

    env: Literal["development", "production", "testing"] = "production"
    services: ServicesConfig = ServicesConfig()
    redis: RedisConfig = RedisConfig()
    paths: PathsConfig = PathsConfig()
    retry: RetryConfig = RetryConfig()
    streams: StreamsConfig = StreamsConfig()
    leases: LeasesConfig = LeasesConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    breakers: BreakersConfig = BreakersConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    pipeline: PipelineConfig = PipelineConfig()
    beam: BeamConfig = BeamConfig()
    photometry: PhotometryConfig = PhotometryConfig()
    imaging: ImagingConfig = ImagingConfig()
    flagging: FlaggingConfig = FlaggingConfig()
    alerts: AlertsConfig = AlertsConfig()
    housekeeping: HousekeepingConfig = HousekeepingConfig()
    calibration: CalibrationConfig = CalibrationConfig()

    def redacted(self) -> dict[str, Any]:
        """The configuration as plain JSON-able data with every secret replaced by '***'."""
        data: dict[str, Any] = self.model_dump(mode="json")
        if self.redis.password is not None:
            data["redis"]["password"] = "***"  # noqa: S105 - a mask, not a password
        if self.redis.sentinel.password is not None:
            data["redis"]["sentinel"]["password"] = "***"  # noqa: S105 - a mask
        if self.redis.url is not None:
            data["redis"]["url"] = redact_url(self.redis.url.get_secret_value())
        if self.alerts.webhook.url is not None:
            data["alerts"]["webhook"]["url"] = "***"
        return data


# redis-py also takes the password from the query string (``redis://host/0?password=...``).
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)", re.IGNORECASE)


def _secret_paths(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> frozenset[tuple[str, ...]]:
    """The key paths of every SecretStr field (``("redis", "password")``, ...)."""
    found: set[tuple[str, ...]] = set()
    for name, info in model.model_fields.items():
        kinds = get_args(info.annotation) or (info.annotation,)
        if SecretStr in kinds:
            found.add((*prefix, name))
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found |= _secret_paths(kind, (*prefix, name))
    return frozenset(found)


SECRET_PATHS = _secret_paths(Config)
"""Where secrets live: taken from the environment as plain strings, never shown in an error."""


def redact_url(url: str) -> str:
    """Hide the passwords of a URL: ``redis://user:password@host`` and ``?password=...``."""
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, location = rest.rpartition("@")
    user = credentials.split(":", 1)[0] if ":" in credentials else ""
    return f"{scheme}://{user}:***@{location}"


def url_passwords(url: str) -> list[str]:
    """Every password a URL carries (userinfo and query string), as written and decoded, so
    the logs can hide each one."""
    found = [m.group(2) for m in _QUERY_PASSWORD.finditer(url)]
    rest = url.partition("://")[2]
    if "@" in rest.split("?", 1)[0]:
        found.append(rest.rpartition("@")[0].partition(":")[2])
    decoded = [unquote(p) for p in found]
    return [p for p in dict.fromkeys([*found, *decoded]) if p]
