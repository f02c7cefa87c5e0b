"""Typed configuration: one YAML file of shared defaults plus per-environment overlays.

The file has two top-level keys, ``defaults`` and ``environments``; the effective
configuration is ``defaults`` deep-merged with ``environments[<env>]``, then with any
``DSA110__SECTION__KEY=value`` environment variables. The long story is in the README.

One pydantic model per section, in a module per part of the daemon: ``services`` (each
service's keys), ``redis``, ``runtime`` (paths, retry, streams, leases, supervisor, breakers,
metrics, logging), ``science`` (pipeline, beam, photometry, imaging, flagging, calibration),
``operations`` (alerts, housekeeping); ``model`` holds :class:`Config` and its secrets,
``loading`` reads and validates a file, ``reload`` compares two configs. A new key goes in its
section's model and in the README, ``man/dsa110d.yaml.5.scd`` and ``etc/dsa110/services.yaml``.
Every model and function is importable from here (``from dsa110d.config import Config``);
the value types (``PositiveFloat``, ...) are ``config.section``'s.
"""

from __future__ import annotations

from dsa110d.config.loading import (
    CONFIG_ERROR_MAX_CHARS,
    CONFIG_SEARCH_PATH,
    DEFAULT_ENV,
    ENV_VAR_PREFIX,
    ENVIRONMENTS,
    apply_environ_overrides,
    check_file,
    deep_merge,
    describe_validation_error,
    load_config,
    overlay_document,
    read_document,
    resolve_env,
    resolve_path,
    validate,
)
from dsa110d.config.model import SECRET_PATHS, Config, redact_url, url_passwords
from dsa110d.config.operations import AlertsConfig, EmailConfig, HousekeepingConfig, WebhookConfig
from dsa110d.config.redis import RedisConfig, SentinelConfig, TLSConfig
from dsa110d.config.reload import RELOADABLE_SECTIONS, reloadable_changes
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
from dsa110d.config.services import (
    AnalyzerConfig,
    ProcessorConfig,
    ServicesConfig,
    WatcherConfig,
    WebConfig,
)

__all__ = [
    "CONFIG_ERROR_MAX_CHARS",
    "CONFIG_SEARCH_PATH",
    "DEFAULT_ENV",
    "ENVIRONMENTS",
    "ENV_VAR_PREFIX",
    "RELOADABLE_SECTIONS",
    "SECRET_PATHS",
    "AlertsConfig",
    "AnalyzerConfig",
    "BeamConfig",
    "BreakersConfig",
    "CalibrationConfig",
    "Config",
    "EmailConfig",
    "FlaggingConfig",
    "HousekeepingConfig",
    "ImagingConfig",
    "LeasesConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PathsConfig",
    "PhotometryConfig",
    "PipelineConfig",
    "ProcessorConfig",
    "RedisConfig",
    "RetryConfig",
    "Section",
    "SentinelConfig",
    "ServicesConfig",
    "StreamsConfig",
    "SupervisorConfig",
    "TLSConfig",
    "WatcherConfig",
    "WebConfig",
    "WebhookConfig",
    "apply_environ_overrides",
    "check_file",
    "deep_merge",
    "describe_validation_error",
    "load_config",
    "overlay_document",
    "read_document",
    "redact_url",
    "reloadable_changes",
    "resolve_env",
    "resolve_path",
    "url_passwords",
    "validate",
]
