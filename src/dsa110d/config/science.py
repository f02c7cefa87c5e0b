"""The science the block pipeline runs: ``pipeline``, ``beam``, ``photometry``, ``imaging``,
``flagging`` and ``calibration``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from dsa110d.config.section import NonNegativeFloat, PositiveFloat, PositiveInt, Section

__all__ = [
    "BeamConfig",
    "CalibrationConfig",
    "FlaggingConfig",
    "ImagingConfig",
    "PhotometryConfig",
    "PipelineConfig",
]


class PipelineConfig(Section):
    stages: list[str] = ["flag", "photometry"]


class BeamConfig(Section):
    """The primary-beam model (science/beam.py) the photometry and any beam weighting use."""

    model: Literal["tapered", "airy"] = "tapered"
    diameter_m: PositiveFloat | None = None
    """None: the model's own (4.34 m tapered, 4.65 m Airy)."""
    taper: PositiveFloat = 1.2


class PhotometryConfig(Section):
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


FAST_MIN_UV_LAMBDA = 1500.0
"""The fast alerts' uv cut (wavelengths). Resolved emission of angular FWHM theta (HII regions,
remnant shells, lobes: 4-12 arcmin, ``science.simulation.diffuse``) has visibility
exp(-pi^2 theta^2 u^2 / (4 ln 2)): it keeps less than 1e-4 of its flux past
u = sqrt(4 ln 2 ln 1e4) / (pi theta), 1380 lambda for the smallest, 4 arcmin (300 m at 21 cm).
A point source keeps all its flux at every baseline. One snapshot chunk cannot clean such
emission, and a transient on its plateau (or near it) is merged into one island with it and
mis-fitted: 1/theta (a few hundred lambda) leaves a 4 arcmin plateau at half its flux and did
not help (the fast-alert test's seed 2 still missed a 50 mJy transient at 150, 300 and 600
lambda, found it at 1000 and all three of its transients at 1500). The price is the short
baselines' sensitivity: in the simulated small array the chunk image's noise rose 2 % (1.25 to
1.27 mJy); DSA-110's core line (5.75 m spacing, ~280 m long) falls wholly below the cut:
measure the chunk images' noise on real data with and without it."""


class ImagingConfig(Section):
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
    fast_min_uv_lambda: NonNegativeFloat = FAST_MIN_UV_LAMBDA
    """Baselines shorter than this (wavelengths) are left out of the chunk images searched
    for fast alerts (wsclean ``-minuv-l``; the block mosaic keeps every baseline). 0: none."""

    @model_validator(mode="after")
    def _clean_depth(self) -> ImagingConfig:
        # wsclean refuses it at run time, after a chunk's wait: say so when the file is read
        if self.auto_mask_sigma <= self.auto_threshold_sigma:
            raise ValueError(
                f"auto_mask_sigma ({self.auto_mask_sigma:g}) must exceed "
                f"auto_threshold_sigma ({self.auto_threshold_sigma:g})"
            )
        return self


class FlaggingConfig(Section):
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
    burst_sigma: PositiveFloat | None = 5.0
    """Flag an integration and channel on every baseline where the autocorrelations' median
    power exceeds what the neighbouring integrations predict by this many robust sigmas (a
    broadband burst, in the channels it covers); None: off."""
    mostly_flagged_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8
    """A block with more of its samples flagged than this is recorded ``mostly_flagged`` and
    the later stages do not measure it."""
    alert_flag_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    """A block flagged above this fraction raises the ``block_flagged`` alert."""


class CalibrationConfig(Section):
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
