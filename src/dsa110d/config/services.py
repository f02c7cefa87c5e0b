"""``services.*``: each built-in service's own keys (``dsa110d.catalogue`` names the service
for each section)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from dsa110d.config.section import NonNegativeFloat, Port, PositiveFloat, Section

__all__ = ["AnalyzerConfig", "ProcessorConfig", "ServicesConfig", "WatcherConfig", "WebConfig"]


class WatcherConfig(Section):
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


class ProcessorConfig(Section):
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


class AnalyzerConfig(Section):
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


class WebConfig(Section):
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


class ServicesConfig(Section):
    hdf5_watcher: WatcherConfig = WatcherConfig()
    ms_processor: ProcessorConfig = ProcessorConfig()
    variability_analyzer: AnalyzerConfig = AnalyzerConfig()
    web: WebConfig = WebConfig()
