"""Operations: ``alerts`` (its webhook and e-mail sinks) and ``housekeeping``."""

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

__all__ = ["AlertsConfig", "EmailConfig", "HousekeepingConfig", "WebhookConfig"]


class WebhookConfig(Section):
    url: SecretStr | None = None  # Slack/Mattermost hook URLs carry a token: never printed
    timeout_sec: PositiveFloat = 5
    max_attempts: PositiveInt = 5
    base_delay_sec: PositiveFloat = 1.0


class EmailConfig(Section):
    host: str | None = None  # unset: no e-mail
    port: Port = 25
    sender: str = "dsa110d@localhost"
    recipients: list[str] = []
    starttls: bool = False
    username: str | None = None
    password_file: Path | None = None
    timeout_sec: PositiveFloat = 10

    @model_validator(mode="after")
    def _login_only_over_tls(self) -> EmailConfig:
        if self.username and self.password_file is not None and not self.starttls:
            raise ValueError(
                "username and password_file need starttls: the SMTP password is never sent "
                "without TLS"
            )
        return self

    def secret_password(self) -> str | None:
        """The SMTP password from ``password_file`` (never from the YAML itself)."""
        return read_secret(None, self.password_file, "alerts.email.password_file")


class AlertsConfig(Section):
    enabled: bool = True
    interval_sec: PositiveFloat = 30
    repeat_interval_sec: NonNegativeFloat = 3600  # 0: never repeat
    resolve_after_sec: PositiveFloat = 90
    unhealthy_for_sec: NonNegativeFloat = 120
    degraded_for_min: NonNegativeFloat = 30
    restart_intensity_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8
    dead_letters_window_sec: PositiveFloat = 3600
    queue_lag_sec: PositiveFloat = 1800
    disk_free_min_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.05
    candidates: bool = True
    sink_queue_size: PositiveInt = 100
    stream_max_len: PositiveInt = 10000
    webhook: WebhookConfig = WebhookConfig()
    email: EmailConfig = EmailConfig()

    @model_validator(mode="after")
    def _resolve_after_an_evaluation(self) -> AlertsConfig:
        if self.resolve_after_sec <= self.interval_sec:
            raise ValueError("resolve_after_sec must be greater than interval_sec")
        return self


class HousekeepingConfig(Section):
    enabled: bool = True
    interval_sec: PositiveFloat = 3600
    record_retention_days: PositiveFloat = 30
    dead_letter_retention_days: PositiveFloat = 30
    alert_retention_days: PositiveFloat = 30
    temp_grace_sec: PositiveFloat = 6 * 3600
