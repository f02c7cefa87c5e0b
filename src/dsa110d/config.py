"""Typed configuration: one YAML file of shared defaults plus per-environment overlays.

The file has two top-level keys, ``defaults`` and ``environments``; the effective
configuration is ``defaults`` deep-merged with ``environments[<env>]``, then with any
``DSA110__SECTION__KEY=value`` environment variables. The long story is in the README.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import unquote

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from dsa110d.errors import ConfigError, describe

ENVIRONMENTS = ("development", "production", "testing")
DEFAULT_ENV = "development"
ENV_VAR_PREFIX = "DSA110__"
CONFIG_ERROR_MAX_CHARS = 1000  # one line naming the file, the key and the fault
CONFIG_SEARCH_PATH = (Path("etc/dsa110/services.yaml"), Path("/etc/dsa110/services.yaml"))

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Section(BaseModel):
    """A configuration section: unknown keys are errors, values are checked strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class WatcherConfig(_Section):
    enabled: bool = True
    poll_interval_sec: PositiveFloat = 60
    expected_subbands: Annotated[int, Field(ge=1, le=16)] = 16
    file_pattern: str = "20*T*.hdf5"
    processing_timeout_sec: PositiveFloat = 300
    group_tolerance_sec: PositiveFloat = 60
    stability_interval_sec: PositiveFloat = 0.2
    force_polling: bool = False
    on_incomplete: Literal["wait", "partial", "fail"] = "wait"
    post_handle: Literal["none", "move"] = "none"


class ProcessorConfig(_Section):
    enabled: bool = True
    poll_interval_sec: PositiveFloat = 120
    mosaic_duration_min: PositiveFloat = 60
    mosaic_overlap_min: NonNegativeFloat = 5
    ms_chunk_duration_min: PositiveFloat = 5
    processing_timeout_sec: PositiveFloat = 1800

    @model_validator(mode="after")
    def _block_geometry(self) -> ProcessorConfig:
        if self.mosaic_overlap_min >= self.mosaic_duration_min:
            raise ValueError(
                f"mosaic_overlap_min ({self.mosaic_overlap_min:g}) must be less than "
                f"mosaic_duration_min ({self.mosaic_duration_min:g})"
            )
        if self.ms_chunk_duration_min > self.mosaic_duration_min:
            raise ValueError(
                f"ms_chunk_duration_min ({self.ms_chunk_duration_min:g}) must not exceed "
                f"mosaic_duration_min ({self.mosaic_duration_min:g})"
            )
        return self


class AnalyzerConfig(_Section):
    enabled: bool = True
    analysis_interval_hours: PositiveFloat = 1
    min_data_points: Annotated[int, Field(ge=2)] = 10
    variability_threshold: PositiveFloat = 0.1
    variability_p_threshold: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    vs_threshold: PositiveFloat = 4.3
    m_threshold: PositiveFloat = 0.26
    false_discovery_rate: Annotated[float, Field(gt=0, le=1)] = 0.01
    min_mean_snr: NonNegativeFloat = 3.0
    voevent_authority: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._~-]{2,}$")] = (
        "dsa110.caltech"
    )
    analysis_timeout_sec: PositiveFloat = 600
    analysis_debounce_sec: PositiveFloat = 30


class WebConfig(_Section):
    """The read-only web console and HTTP API (``dsa110d.services.web``)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Port = 8110
    token_file: Path | None = None
    refresh_sec: PositiveFloat = 5

    @property
    def url(self) -> str:
        """Where the console answers (``dsa110ctl web-url``, the demo's banner): a wildcard
        address is reached on loopback from this host."""
        host = self.host
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming the wildcard, not binding it
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"


class ServicesConfig(_Section):
    hdf5_watcher: WatcherConfig = WatcherConfig()
    ms_processor: ProcessorConfig = ProcessorConfig()
    variability_analyzer: AnalyzerConfig = AnalyzerConfig()
    web: WebConfig = WebConfig()


class TLSConfig(_Section):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    verify: bool = True


def read_secret(value: SecretStr | None, path: Path | None, key: str) -> str | None:
    """A secret given in the config (``value``) or else read from the file at ``path``."""
    if value is not None:
        return value.get_secret_value()
    if path is None:
        return None
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None


class SentinelConfig(_Section):
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


class RedisConfig(_Section):
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


class PathsConfig(_Section):
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


class RetryConfig(_Section):
    max_attempts: PositiveInt = 5
    base_delay_sec: PositiveFloat = 1.0
    max_delay_sec: PositiveFloat = 60.0

    @model_validator(mode="after")
    def _cap_above_base(self) -> RetryConfig:
        if self.max_delay_sec < self.base_delay_sec:
            raise ValueError("max_delay_sec must be at least base_delay_sec")
        return self


class StreamsConfig(_Section):
    heartbeat_interval_sec: PositiveFloat = 5
    heartbeat_ttl_sec: PositiveFloat = 20
    read_block_ms: PositiveInt = 1000
    max_entry_bytes: PositiveInt = 65536
    retention_sec: PositiveFloat = 7 * 86400

    @model_validator(mode="after")
    def _ttl_above_interval(self) -> StreamsConfig:
        if self.heartbeat_ttl_sec <= self.heartbeat_interval_sec:
            raise ValueError("heartbeat_ttl_sec must be greater than heartbeat_interval_sec")
        return self


class LeasesConfig(_Section):
    ttl_sec: PositiveFloat = 30
    renew_interval_sec: PositiveFloat = 10

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> LeasesConfig:
        if self.renew_interval_sec >= self.ttl_sec:
            raise ValueError("renew_interval_sec must be less than ttl_sec")
        return self


class SupervisorConfig(_Section):
    max_restarts: PositiveInt = 5
    window_sec: PositiveFloat = 60
    restart_base_delay_sec: PositiveFloat = 0.5
    restart_max_delay_sec: PositiveFloat = 30
    shutdown_grace_sec: NonNegativeFloat = 30
    heartbeat_interval_sec: PositiveFloat = 5
    registry_ttl_sec: PositiveFloat = 30
    workers: Annotated[int, Field(ge=0)] = 0  # 0: one per core
    backlog_degraded: PositiveInt = 50


class BreakersConfig(_Section):
    failure_threshold: PositiveInt = 5
    reset_timeout_sec: PositiveFloat = 30


class MetricsConfig(_Section):
    port: Port | None = None
    host: str = "127.0.0.1"


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"
    file: bool = False


class PipelineConfig(_Section):
    stages: list[str] = ["flag", "photometry"]


class BeamConfig(_Section):
    """The primary-beam model (science/beam.py) the photometry and any beam weighting use."""

    model: Literal["tapered", "airy"] = "tapered"
    diameter_m: PositiveFloat | None = None
    """None: the model's own (4.34 m tapered, 4.65 m Airy)."""
    taper: PositiveFloat = 1.2


class PhotometryConfig(_Section):
    """Forced photometry (science/photometry): baselines used and the error floor."""

    uv_min_lambda: NonNegativeFloat = 100.0
    uv_max_lambda: PositiveFloat | None = None
    systematic_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.02
    refine_min_snr: PositiveFloat | None = None

    @model_validator(mode="after")
    def _uv_range(self) -> PhotometryConfig:
        if self.uv_max_lambda is not None and self.uv_max_lambda <= self.uv_min_lambda:
            raise ValueError(
                f"uv_max_lambda ({self.uv_max_lambda:g}) must exceed "
                f"uv_min_lambda ({self.uv_min_lambda:g})"
            )
        return self


class ImagingConfig(_Section):
    """The ``image`` stage: wsclean per chunk, the block mosaic, source finding (#18)."""

    wsclean: str = "wsclean"
    """The wsclean program: a name looked up on PATH, or a path (a site's own build)."""
    size_px: Annotated[int, Field(ge=64, le=16384)] = 2048
    scale_arcsec: PositiveFloat = 6.0
    weighting: Literal["briggs", "uniform", "natural"] = "briggs"
    robust: Annotated[float, Field(ge=-2, le=2)] = 0.0
    niter: Annotated[int, Field(ge=0)] = 10000
    mgain: Annotated[float, Field(gt=0, le=1)] = 0.8
    auto_threshold_sigma: PositiveFloat = 1.0
    auto_mask_sigma: PositiveFloat = 4.0
    threads: PositiveInt = 1
    detect_sigma: PositiveFloat = 5.0
    new_source_sigma: PositiveFloat = 9.0
    match_radius_beams: PositiveFloat = 1.0
    fast_alert_snr: PositiveFloat | None = 10.0
    """Each chunk is imaged and searched as soon as it is converted; an unmatched detection
    at least this many times the chunk image's noise is a fast alert, settled later by the
    block's mosaic. None: no fast alerts (only with the ``image`` stage configured)."""


class FlaggingConfig(_Section):
    """The ``flag`` stage (AOFlagger, antenna health, static channel mask, flag QA)."""

    strategy: str | None = None
    """AOFlagger Lua strategy file; None: the DSA-110 strategy shipped with dsa110d."""
    aoflagger_timeout_sec: PositiveFloat = 900
    """Longest an AOFlagger run on one block may take before the stage fails."""
    static_channel_ranges_mhz: list[tuple[float, float]] = []
    """Frequency ranges (MHz, [low, high]) always flagged: channels known to be bad."""
    dead_power_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    """An antenna whose autocorrelation power is below this fraction of the array's median
    is dead."""
    hot_power_factor: Annotated[float, Field(gt=1)] = 3.0
    """An antenna whose autocorrelation power is above this multiple of the array's median
    is hot (its system temperature is). The autocorrelations are uncalibrated: antenna gains
    alone spread their power over a factor ~2 either side of the median, so 2 would call
    healthy high-gain antennas hot."""
    unstable_rms: PositiveFloat = 0.05
    """An antenna whose autocorrelation power, relative to the array's and detrended over the
    block, scatters by more than this (rms / median) is unstable."""
    auto_rfi_sigma: PositiveFloat | None = 5.0
    """Flag an integration and channel on every baseline where the autocorrelations' median
    power exceeds its running median over frequency by this many robust sigmas; None: off."""
    auto_rfi_window_mhz: PositiveFloat = 6.0
    """Width of that running median (at least 5 channels): wider than the widest narrowband
    emitter (radars: ~2 MHz), narrow enough to follow the bandpass."""
    burst_ratio: Annotated[float, Field(gt=1)] = 2.0
    """An integration whose amplitude level exceeds this multiple of its neighbours' is
    swamped by a broadband burst and flagged whole before AOFlagger runs."""
    mostly_flagged_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8
    """A block with more of its samples flagged than this is recorded ``mostly_flagged`` and
    the later stages do not measure it."""
    alert_flag_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    """A block flagged above this fraction raises the ``block_flagged`` alert."""


class WebhookConfig(_Section):
    url: SecretStr | None = None  # Slack/Mattermost hook URLs carry a token: never printed
    timeout_sec: PositiveFloat = 5
    max_attempts: PositiveInt = 5
    base_delay_sec: PositiveFloat = 1.0


class EmailConfig(_Section):
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


class AlertsConfig(_Section):
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


class HousekeepingConfig(_Section):
    enabled: bool = True
    interval_sec: PositiveFloat = 3600
    record_retention_days: PositiveFloat = 30
    dead_letter_retention_days: PositiveFloat = 30
    alert_retention_days: PositiveFloat = 30
    temp_grace_sec: PositiveFloat = 6 * 3600


class CalibrationConfig(_Section):
    """``calibration.*``: the solver's keys (the calibrate stage) and the operations' keys."""

    enabled: bool = False
    """Calibrate, and make photometry refuse (flag ``uncalibrated``) chunks without a valid
    solution. Off: photometry reads CORRECTED_DATA when present, else DATA."""
    reference_antenna: Annotated[int, Field(ge=0)] = 23
    """Reference antenna (index in the MS ANTENNA table: name - 1); when flagged or absent,
    the unflagged antenna with the most data."""
    bandpass_valid_days: PositiveFloat = 3.0
    """A bandpass from a calibrator transit applies this many days either side of it."""
    solution_interval_sec: PositiveFloat = 300.0
    """Length of a complex-gain solution interval, seconds (300: one per chunk)."""
    min_snr: PositiveFloat = 5.0
    """Gain solutions below this SNR are flagged (their antennas' data too)."""
    calibrator_min_beam_gain: float = Field(default=0.5, gt=0, le=1)
    """A chunk is a calibrator's transit when the calibrator reaches this beam gain in it."""
    max_flagged_fraction: float = Field(default=0.5, ge=0, le=1)
    """A solution with more antennas flagged than this is ``poor`` and not applied."""

    # --- operations (issue 16 item 4, calops): health, metrics QA -------------------------
    max_days_without_bandpass: PositiveFloat = 2.0
    """Days of processed data without a new valid bandpass (no calibrator transit solved)
    after which the processor reports DEGRADED."""
    gain_amp_scatter_max: PositiveFloat = 0.1
    """Largest acceptable amplitude scatter of the newest gain solution (fraction; the
    solver's ``amp_scatter``): beyond it the gain QA is degraded (metric and alert)."""
    gain_phase_scatter_max_deg: PositiveFloat = 10.0
    """Largest acceptable phase scatter of the newest gain solution (degrees)."""
    # --- end operations -------------------------------------------------------------------


class Config(_Section):
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


# --------------------------------------------------------------------------- loading


def resolve_env(env: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """``--env``, else ``DSA110_ENV``, else development."""
    chosen = env or environ.get("DSA110_ENV") or DEFAULT_ENV
    if chosen not in ENVIRONMENTS:
        raise ConfigError(
            f"unknown environment {chosen!r}: choose one of {', '.join(ENVIRONMENTS)}"
        )
    return chosen


def resolve_path(path: Path | None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """``--config``, else ``DSA110_CONFIG``, else the first search-path file that exists."""
    if path is not None:
        return path
    if environ.get("DSA110_CONFIG"):
        return Path(environ["DSA110_CONFIG"])
    return next((p for p in CONFIG_SEARCH_PATH if p.exists()), None)


def load_config(
    path: Path | None = None,
    env: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Config:
    """Load, overlay and validate; every failure is one ConfigError line."""
    try:
        chosen_env = resolve_env(env, environ)
        chosen_path = resolve_path(path, environ)
        document = read_document(chosen_path) if chosen_path is not None else {}
        source = str(chosen_path) if chosen_path is not None else "built-in defaults"
        merged = overlay_document(document, chosen_env, source)
        merged = apply_environ_overrides(merged, environ)
        merged["env"] = chosen_env
        return validate(merged, source)
    except ConfigError as exc:
        # Key paths and variable names come from the input and may hold newlines or
        # terminal escapes: the line printed is always one printable line.
        raise ConfigError(describe(exc, CONFIG_ERROR_MAX_CHARS)) from None


def _parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` whose every failure is a YAMLError: PyYAML lets ValueError out of
    its constructors (an impossible date, an integer of 5000 digits) and RecursionError out
    of its composer (brackets nested thousands deep)."""
    try:
        return yaml.safe_load(text)
    except (ValueError, OverflowError, RecursionError) as exc:
        raise yaml.YAMLError(describe(exc)) from None


def check_file(
    path: Path, env: str | None = None, environ: Mapping[str, str] = os.environ
) -> dict[str, ConfigError | None]:
    """Validate ``path`` for ``env``, or without one for every environment the file defines
    (the default one when it defines none): a fault in ``defaults`` that one environment's
    overlay hides must still be found. Environment name -> its error, or None when valid."""
    document = read_document(path)
    if env is not None:
        names = [resolve_env(env, environ)]
    else:
        defined = document.get("environments")
        names = [n for n in ENVIRONMENTS if isinstance(defined, dict) and n in defined]
        names = names or [DEFAULT_ENV]
    results: dict[str, ConfigError | None] = {}
    for name in names:
        try:
            load_config(path, name, environ)
            results[name] = None
        except ConfigError as exc:
            results[name] = exc
    return results


def read_document(path: Path) -> dict[str, Any]:
    """Parse the YAML file; a syntax error names the file and line."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        document = _parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {exc}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: top level must be a mapping with 'defaults' and 'environments'")
    return document


def overlay_document(document: Mapping[str, Any], env: str, source: str) -> dict[str, Any]:
    """Deep-merge ``defaults`` with ``environments[env]``."""
    unknown = set(document) - {"defaults", "environments"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key {sorted(unknown)[0]!r} "
            "(expected 'defaults' and 'environments')"
        )
    defaults = _mapping(document.get("defaults"), f"{source}: defaults")
    environments = _mapping(document.get("environments"), f"{source}: environments")
    for name in environments:
        if name not in ENVIRONMENTS:
            raise ConfigError(
                f"{source}: environments.{name}: unknown environment "
                f"(choose one of {', '.join(ENVIRONMENTS)})"
            )
    overlay = _mapping(environments.get(env), f"{source}: environments.{env}")
    return deep_merge(defaults, overlay)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(value).__name__}")
    return value


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``overlay`` wins, nested mappings merge key by key."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_environ_overrides(
    document: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, Any]:
    """Apply ``DSA110__A__B=value``: the path is lower-cased, the value parsed as YAML (a
    secret, :data:`SECRET_PATHS`, is taken as the plain string)."""
    result = dict(document)
    for name in sorted(environ):
        if not name.startswith(ENV_VAR_PREFIX):
            continue
        keys = [part.lower() for part in name[len(ENV_VAR_PREFIX) :].split("__")]
        if not all(keys):
            raise ConfigError(f"{name}: malformed override name (use DSA110__SECTION__KEY)")
        if tuple(keys) in SECRET_PATHS:
            value: Any = environ[name]  # a secret is the string as given, never YAML
        else:
            try:
                value = _parse_yaml(environ[name])
            except yaml.YAMLError:
                value = environ[name]
        override: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            override = {key: override}
        result = deep_merge(result, override)
    return result


def validate(document: Mapping[str, Any], source: str) -> Config:
    """Build the Config; the first validation error becomes one line naming the key path."""
    try:
        return Config.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line: ``key.path: what is wrong (got value)``."""
    error = exc.errors(include_url=False)[0]
    path = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key (check its spelling)"
    message = error["msg"].removeprefix("Value error, ")
    secret = any(tuple(error["loc"][: len(p)]) == p for p in SECRET_PATHS)
    hidden = secret or kind in {"missing"} or "input" not in error
    shown = "" if hidden else _shown(error["input"])
    where = f"{path}: " if path else ""
    return f"{where}{message}{shown}"


def _shown(value: Any) -> str:
    if isinstance(value, dict | list):
        return ""
    return f" (got {value!r})"


RELOADABLE_SECTIONS = ("services", "logging", "supervisor", "retry", "alerts", "housekeeping")


def reloadable_changes(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """Key paths whose values differ between two configs, within the reloadable sections."""
    changes: dict[str, tuple[Any, Any]] = {}
    old_data, new_data = old.model_dump(mode="json"), new.model_dump(mode="json")
    for section in RELOADABLE_SECTIONS:
        _diff(old_data[section], new_data[section], section, changes)
    return changes


def _diff(old: Any, new: Any, path: str, out: dict[str, tuple[Any, Any]]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old.keys() | new.keys():
            _diff(old.get(key), new.get(key), f"{path}.{key}", out)
    elif old != new:
        out[path] = (old, new)
