"""Radio-frequency interference and antenna faults (corruption level ``all``).

The physical model, as the DSA-110 at OVRO meets it in 1311-1499 MHz:

**Interference** is a terrestrial or airborne emitter far outside the primary beam, received
by every antenna through its far sidelobes. Antenna ``i`` couples to it with a sidelobe gain
``c_i`` (log-normal, :data:`COUPLING_LOG_SIGMA`, fixed for the run: the horizon response of
each dish differs), so an emitter of amplitude ``A`` (Jy, as the correlator's averaged output
of one integration and channel sees it) adds ``A c_i`` to the autocorrelation of antenna
``i`` (real power) and ``A sqrt(c_i c_j) exp(i phi)`` to the cross-correlation of ``i`` and
``j``. The phase ``phi`` is uniform and drawn afresh for every baseline and integration: the
emitter is not at the phase centre, so fringe stopping toward the meridian rotates its phase
at a different rate on every baseline. The same signal enters XX and YY. Emitters:

- *narrowband lines that come and go*: the GPS L3 carrier at 1381.05 MHz and a few others
  (:data:`LINE_FREQS_HZ` plus random ones), each on and off as a telegraph process (on and off
  durations exponential, means :data:`LINE_ON_MEAN_S` and :data:`LINE_OFF_MEAN_S`);
- *radar*: an air-surveillance radar's pulses, periodic (period :data:`RADAR_PERIOD_RANGE_S`),
  a few MHz wide; an integration is hit when a pulse falls inside it;
- *broadband bursts*: arcing power lines, lightning, spark plugs: one short burst across most
  of the band at Poisson times (:data:`BURST_RATE_PER_HOUR`);
- *bad channels*: a few channels occupied all day by a steady emitter (:data:`N_BAD_CHANNELS`),
  their amplitude fluctuating by :data:`BAD_CHANNEL_JITTER` from integration to integration.

Amplitudes are drawn log-uniformly in units of the thermal noise ``sigma`` of one cross
visibility (:data:`RFI_SIGMA_RANGE`): what decides whether a flagger can see them. Some lie
below 3 sigma on the weakest baselines, as real interference does.

**Antenna faults**, for the whole run (one antenna of each kind, distinct):

- *dead*: the receiver gives no power; its autocorrelation and its baselines fall to
  :data:`DEAD_RESIDUAL` of their value (the digitiser's own uncorrelated noise);
- *hot*: its system temperature is :data:`HOT_TSYS_FACTOR` times the others': the autocorrelation
  scales by it and its baselines gain noise up to ``sqrt(factor)`` sigma;
- *oscillating*: an amplifier whose gain oscillates, amplitude ``1 + a sin(2 pi t / P + p)``
  (:data:`OSCILLATION_DEPTH`, :data:`OSCILLATION_PERIOD_RANGE_S`); autocorrelation by its square.

**Dropped packets**: a correlator node loses the packets of one subband for one integration at
Poisson times (:data:`DROP_RATE_PER_HOUR`): every baseline of that subband is written as zero.

The truth (``corruptions/rfi``) holds everything as compact masks: each emitter event's time
interval (JD) and frequency interval (Hz) with its amplitude, the sidelobe gains, the faulty
antennas and the dropped (time, subband) intervals. :func:`truth_masks` rebuilds from it, on
any grid of integrations, frequencies and baselines (e.g. a Measurement Set's), the injected
interference amplitude per sample and the samples of faulty antennas and dropped packets; the
simulator itself applies the events through the same rules (:func:`integration_hits`,
:func:`channel_hits`), so the masks are exactly what was done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dsa110d.science.simulation import corruptions
from dsa110d.science.simulation.visibilities import noise_sigma_jy

NAME = "rfi"
SECONDS_PER_DAY = 86400.0

LINE_FREQS_HZ = (1381.05e6,)
"""Lines always present in the schedule: GPS L3 (1381.05 MHz)."""
N_RANDOM_LINES = 2
"""Further lines at random frequencies in the band."""
LINE_WIDTH_HZ = 0.5e6
"""Width of a narrowband line (it lands in one or two channels at any scale)."""
LINE_ON_MEAN_S = 1800.0
LINE_OFF_MEAN_S = 1800.0
"""Mean on and off durations of a line's telegraph process, seconds."""
N_RADARS = 1
RADAR_WIDTH_HZ = 2.0e6
RADAR_PERIOD_RANGE_S = (60.0, 180.0)
"""A radar pulse train's period (its beam sweeping past), seconds."""
RADAR_PULSE_S = 1.0
"""Duration of one pulse train as the array sees it, seconds."""
BURST_RATE_PER_HOUR = 3.0
BURST_DURATION_S = 1.0
BURST_BAND_FRACTION = (0.5, 1.0)
"""A broadband burst covers this fraction of the band (a contiguous range)."""
N_BAD_CHANNELS = 3
BAD_CHANNEL_JITTER = 0.2
"""Relative scatter of a bad channel's amplitude from integration to integration."""
JITTER_FLOOR = 1.0 - 3 * BAD_CHANNEL_JITTER
"""The truth masks give a jittering event this fraction of its amplitude (its 3-sigma low):
a sample counted above n sigma is above it whatever its jitter drew."""
RFI_SIGMA_RANGE = (5.0, 300.0)
"""Emitter amplitudes (unit sidelobe gain) drawn log-uniformly in this range of sigma."""
COUPLING_LOG_SIGMA = 0.3
"""Scatter of the antennas' sidelobe gains (natural log); median 1."""
DEAD_RESIDUAL = 0.01
HOT_TSYS_FACTOR = 4.0
OSCILLATION_DEPTH = 0.3
OSCILLATION_PERIOD_RANGE_S = (300.0, 900.0)
DROP_RATE_PER_HOUR = 2.0

FAULT_KINDS = ("dead", "hot", "oscillating")


def _jd(seconds: float) -> float:
    return seconds / SECONDS_PER_DAY


def integration_hits(
    event: dict[str, Any], time_jd: NDArray[np.float64], integration_s: float
) -> NDArray[np.bool_]:
    """Which integrations (centres ``time_jd``) an event touches: its emission interval, or
    one of its periodic pulses, overlaps the integration."""
    half = _jd(integration_s) / 2.0
    lo, hi = time_jd - half, time_jd + half
    start, end = event["time_jd"]
    hit = (hi > start) & (lo < end)
    period = event.get("period_s")
    if period is not None:  # pulses at start + k period, each RADAR_PULSE_S long
        p = _jd(period)
        first = np.ceil((lo - start - _jd(RADAR_PULSE_S)) / p)
        hit &= start + first * p < hi
    return np.asarray(hit)


def channel_hits(
    event: dict[str, Any], freq_hz: NDArray[np.float64], channel_width_hz: float
) -> NDArray[np.bool_]:
    """Which channels (centres ``freq_hz``, any shape) the event's frequency interval overlaps."""
    lo, hi = event["freq_hz"]
    half = channel_width_hz / 2.0
    return np.asarray((freq_hz + half > lo) & (freq_hz - half < hi))


def channel_width(freq_hz: NDArray[np.float64]) -> float:
    """The channel width of a (Nsubbands, Nchannels) frequency grid, Hz."""
    steps = np.abs(np.diff(np.sort(freq_hz.ravel())))
    return float(np.median(steps)) if steps.size else 0.0


@dataclass
class RFI:
    """Interference, antenna faults and dropped packets (see the module docstring)."""

    instrument: corruptions.InstrumentContext
    name: str = NAME
    events: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    coupling: dict[int, float] = field(default_factory=dict)
    faults: dict[str, list[int]] = field(default_factory=dict)
    oscillation: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        inst, rng = self.instrument, self.instrument.rng
        self.width_hz = channel_width(inst.freq_hz)
        self.sigma_jy = noise_sigma_jy(self.width_hz, inst.integration_s, inst.sefd_jy)
        ants = [int(a) for a in inst.antenna_numbers]
        gains = np.exp(rng.normal(0.0, COUPLING_LOG_SIGMA, len(ants)))
        self.coupling = {a: float(g) for a, g in zip(ants, gains, strict=True)}
        picked = rng.choice(ants, size=min(len(FAULT_KINDS), len(ants)), replace=False)
        self.faults = {kind: [int(a)] for kind, a in zip(FAULT_KINDS, picked, strict=False)}
        low, high = OSCILLATION_PERIOD_RANGE_S
        self.oscillation = {
            "period_s": float(rng.uniform(low, high)),
            "phase_rad": float(rng.uniform(0.0, 2 * math.pi)),
            "depth": OSCILLATION_DEPTH,
        }
        self._schedule(rng)

    # --- drawing the schedule ----------------------------------------------------------------
    def _amplitude(self, rng: np.random.Generator) -> float:
        low, high = np.log(RFI_SIGMA_RANGE)
        return float(np.exp(rng.uniform(low, high))) * self.sigma_jy

    def _schedule(self, rng: np.random.Generator) -> None:
        inst = self.instrument
        start = inst.start_jd - _jd(inst.integration_s)
        end = inst.end_jd + _jd(inst.integration_s)
        span_s = (end - start) * SECONDS_PER_DAY
        f_lo, f_hi = float(inst.freq_hz.min()), float(inst.freq_hz.max())
        lines = list(LINE_FREQS_HZ) + list(rng.uniform(f_lo, f_hi, N_RANDOM_LINES))
        for f0 in lines:
            on = bool(rng.random() < LINE_ON_MEAN_S / (LINE_ON_MEAN_S + LINE_OFF_MEAN_S))
            t = start
            while t < end:
                length = _jd(rng.exponential(LINE_ON_MEAN_S if on else LINE_OFF_MEAN_S))
                if on:
                    band = [f0 - LINE_WIDTH_HZ / 2, f0 + LINE_WIDTH_HZ / 2]
                    self._add("line", [t, min(end, t + length)], band, self._amplitude(rng))
                t, on = t + length, not on
        for _ in range(N_RADARS):
            f0 = float(rng.uniform(f_lo, f_hi))
            period = float(rng.uniform(*RADAR_PERIOD_RANGE_S))
            first = start + _jd(rng.uniform(0.0, period))
            band = [f0 - RADAR_WIDTH_HZ / 2, f0 + RADAR_WIDTH_HZ / 2]
            self._add("radar", [first, end], band, self._amplitude(rng), period_s=period)
        for t in np.sort(rng.uniform(start, end, rng.poisson(BURST_RATE_PER_HOUR * span_s / 3600))):
            width = rng.uniform(*BURST_BAND_FRACTION) * (f_hi - f_lo)
            lo = float(rng.uniform(f_lo, f_hi - width))
            burst = [float(t), float(t) + _jd(BURST_DURATION_S)]
            self._add("burst", burst, [lo, lo + width], self._amplitude(rng))
        flat = np.sort(inst.freq_hz.ravel())
        for f0 in rng.choice(flat, size=min(N_BAD_CHANNELS, flat.size), replace=False):
            band = [float(f0) - self.width_hz / 4, float(f0) + self.width_hz / 4]
            self._add("bad_channel", [start, end], band, self._amplitude(rng), jitter=True)
        n_sb = inst.freq_hz.shape[0]
        for t in np.sort(rng.uniform(start, end, rng.poisson(DROP_RATE_PER_HOUR * span_s / 3600))):
            sb = int(rng.integers(n_sb))
            sb_freq = inst.freq_hz[sb]
            band = [
                float(sb_freq.min()) - self.width_hz / 4,
                float(sb_freq.max()) + self.width_hz / 4,
            ]
            self.dropped.append({"subband": sb, "time_jd": [float(t), float(t)], "freq_hz": band})

    def _add(
        self,
        kind: str,
        time_jd: list[float],
        freq_hz: list[float],
        amplitude_jy: float,
        **extra: Any,
    ) -> None:
        event = {
            "kind": kind,
            "time_jd": [float(x) for x in time_jd],
            "freq_hz": [float(x) for x in freq_hz],
            "amplitude_jy": amplitude_jy,
            **extra,
        }
        self.events.append(event)

    # --- applying it --------------------------------------------------------------------------
    def apply(self, vis: NDArray[np.complex64], chunk: corruptions.ChunkContext) -> None:
        n_t, n_bls = vis.shape[:2]
        flat = vis.reshape(n_t, n_bls, -1, 2)
        assert np.shares_memory(flat, vis), "the chunk must be contiguous"
        freq = chunk.freq_hz.ravel()
        integration_s = self.instrument.integration_s
        rng = self.instrument.rng
        auto = chunk.ant_1 == chunk.ant_2
        c1 = np.array([self.coupling[int(a)] for a in chunk.ant_1])
        c2 = np.array([self.coupling[int(a)] for a in chunk.ant_2])
        baseline_gain = np.sqrt(c1 * c2)
        for event in self.events:
            times = np.flatnonzero(integration_hits(event, chunk.time_jd, integration_s))
            chans = np.flatnonzero(channel_hits(event, freq, self.width_hz))
            if times.size == 0 or chans.size == 0:
                continue
            amp = np.full(times.size, event["amplitude_jy"], dtype=np.float64)
            if event.get("jitter"):
                amp *= 1.0 + BAD_CHANNEL_JITTER * rng.standard_normal(times.size)
            phase = rng.uniform(0.0, 2 * math.pi, (times.size, n_bls, chans.size))
            signal = amp[:, None, None] * baseline_gain[None, :, None] * np.exp(1j * phase)
            signal[:, auto] = (amp[:, None, None] * c1[auto][None, :, None]).astype(complex)
            flat[np.ix_(times, np.arange(n_bls), chans)] += signal.astype(np.complex64)[..., None]
        self._faults(flat, chunk, auto)
        for drop in self.dropped:
            times = np.flatnonzero(integration_hits(drop, chunk.time_jd, integration_s))
            chans = np.flatnonzero(channel_hits(drop, freq, self.width_hz))
            if times.size and chans.size:
                flat[np.ix_(times, np.arange(n_bls), chans)] = 0

    def _faults(
        self, flat: NDArray[np.complex64], chunk: corruptions.ChunkContext, auto: NDArray[np.bool_]
    ) -> None:
        rng = self.instrument.rng
        for ant in self.faults.get("hot", []):
            touched = (chunk.ant_1 == ant) | (chunk.ant_2 == ant)
            cross = touched & ~auto
            extra = self.sigma_jy * math.sqrt(math.sqrt(HOT_TSYS_FACTOR) ** 2 - 1.0)
            shape = (flat.shape[0], int(cross.sum()), *flat.shape[2:])
            noise = rng.standard_normal((*shape, 2)).astype(np.float32) * np.float32(extra)
            flat[:, cross] += (noise[..., 0] + 1j * noise[..., 1]).astype(np.complex64)
            own = touched & auto
            flat[:, own] = flat[:, own] * np.float32(HOT_TSYS_FACTOR)
        for ant in self.faults.get("oscillating", []):
            t_s = (chunk.time_jd - self.instrument.start_jd) * SECONDS_PER_DAY
            osc = self.oscillation
            gain = 1.0 + osc["depth"] * np.sin(
                2 * math.pi * t_s / osc["period_s"] + osc["phase_rad"]
            )
            touched = (chunk.ant_1 == ant) | (chunk.ant_2 == ant)
            power = np.where(auto[touched], 2, 1)  # an autocorrelation sees the gain twice
            factor = gain[:, None] ** power[None, :]
            flat[:, touched] *= factor.astype(np.float32)[:, :, None, None]
        for ant in self.faults.get("dead", []):
            touched = (chunk.ant_1 == ant) | (chunk.ant_2 == ant)
            flat[:, touched] *= np.float32(DEAD_RESIDUAL)

    def truth(self) -> dict[str, Any]:
        return {
            "model": "rfi",
            "noise_sigma_jy": self.sigma_jy,
            "channel_width_hz": self.width_hz,
            "integration_s": self.instrument.integration_s,
            "coupling": {str(a): g for a, g in self.coupling.items()},
            "events": self.events,
            "dropped": self.dropped,
            "bad_antennas": self.faults,
            "bad_antenna_names": {
                kind: [str(a + 1) for a in ants] for kind, ants in self.faults.items()
            },
            "oscillation": self.oscillation,
        }


@dataclass(frozen=True)
class TruthMasks:
    """The corruptions on a grid (Nt, Nbls, Nchannels), rebuilt from the truth."""

    rfi_amplitude_jy: NDArray[np.float32]
    """Injected interference amplitude per sample (0: none), cross-correlations."""
    faulty: NDArray[np.bool_]
    """Samples of a faulty antenna's baselines or of dropped packets."""
    sigma_jy: float

    def rfi_above(self, n_sigma: float) -> NDArray[np.bool_]:
        """Samples whose injected interference exceeds ``n_sigma`` thermal sigmas."""
        return np.asarray(self.rfi_amplitude_jy > n_sigma * self.sigma_jy)

    @property
    def clean(self) -> NDArray[np.bool_]:
        """Samples neither touched by interference nor faulty."""
        return np.asarray((self.rfi_amplitude_jy == 0) & ~self.faulty)


def truth_masks(
    truth: dict[str, Any],
    time_jd: NDArray[np.float64],
    freq_hz: NDArray[np.float64],
    ant_1: NDArray[np.int64],
    ant_2: NDArray[np.int64],
) -> TruthMasks:
    """The injected corruptions of ``truth`` (the truth file's ``corruptions/rfi``) on a grid of
    integrations ``time_jd`` (Nt,), channels ``freq_hz`` (Nchannels,) and baselines (Nbls,)."""
    integration_s, width = float(truth["integration_s"]), float(truth["channel_width_hz"])
    coupling = {int(a): g for a, g in truth["coupling"].items()}
    pairs = zip(ant_1, ant_2, strict=True)
    gain = np.sqrt(np.array([coupling[int(a)] * coupling[int(b)] for a, b in pairs]))
    shape = (len(time_jd), len(ant_1), len(freq_hz))
    amplitude = np.zeros(shape, dtype=np.float32)
    for event in truth["events"]:
        times = np.flatnonzero(integration_hits(event, time_jd, integration_s))
        chans = np.flatnonzero(channel_hits(event, freq_hz, width))
        if times.size and chans.size:
            amp = event["amplitude_jy"] * (JITTER_FLOOR if event.get("jitter") else 1.0)
            cells = np.ix_(times, np.arange(len(ant_1)), chans)
            amplitude[cells] += np.float32(amp) * gain[None, :, None].astype(np.float32)
    amplitude[:, ant_1 == ant_2] = 0.0
    faulty = np.zeros(shape, dtype=bool)
    bad = [a for ants in truth["bad_antennas"].values() for a in ants]
    faulty[:, np.isin(ant_1, bad) | np.isin(ant_2, bad)] = True
    for drop in truth["dropped"]:
        times = np.flatnonzero(integration_hits(drop, time_jd, integration_s))
        chans = np.flatnonzero(channel_hits(drop, freq_hz, width))
        faulty[np.ix_(times, np.arange(len(ant_1)), chans)] = True
    return TruthMasks(amplitude, faulty, float(truth["noise_sigma_jy"]))


corruptions.register("all", RFI)
