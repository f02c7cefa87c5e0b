"""Antenna-based gains: what every antenna's electronics do to its signal (level ``gains``).

Each antenna ``a`` and polarisation ``p`` (X, Y) multiplies its voltage by

    g_ap(t, f) = A_ap(t) exp(i phi_ap(t)) exp(-2 pi i f tau_ap) B_ap(f) R(f)

so a visibility becomes ``V_ij g_i conj(g_j)`` (autocorrelations ``|g_i|^2 V_ii``):

- ``A_ap(t) = A0 (1 + sum_k a_k sin(2 pi (t - t0) / P_k + psi_k))``: an amplitude with
  ``AMPLITUDE_SCATTER`` scatter between antennas (A0 = 1 + scatter x N(0, 1), clipped to
  ``AMPLITUDE_CLIP``), drifting smoothly by ``AMPLITUDE_DRIFT`` over periods of
  ``DRIFT_PERIOD_RANGE_H`` (temperature cycles of the analogue chain);
- ``phi_ap(t) = phi0 + sum_k b_k sin(2 pi (t - t0) / P_k + chi_k)``: a uniformly random phase
  drifting by ``PHASE_DRIFT_DEG`` over the same kind of periods (cable and LO drifts);
- ``tau_ap``: a fixed delay of ``DELAY_SCATTER_NS`` (cable lengths not quite equalised);
- ``B_ap(f) = (1 + r cos(2 pi f / P_r + rho)) exp(i q sin(2 pi f / P_r + rho'))``: a bandpass
  ripple of ``RIPPLE_AMPLITUDE`` in amplitude and ``RIPPLE_PHASE_DEG`` in phase, period
  ``RIPPLE_PERIOD_RANGE_HZ`` (standing waves in the feed and cables);
- ``R(f)``: the roll-off of each subband's filter towards its edges, the same for all antennas
  (a Butterworth-like ``1 / sqrt(1 + |2x - 1|^(2 n))`` of the position ``x`` in the subband).

Delays and bandpasses do not change with time (a bandpass solved on a calibrator stays valid
for days); amplitudes and phases drift (a gain solution per chunk follows them). The truth
file keeps every parameter, and :func:`true_gains` evaluates the gain at any time and
frequency from it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dsa110d.science import constants as k
from dsa110d.science.simulation import corruptions

NAME = "gains"
AMPLITUDE_SCATTER = 0.2
"""Fractional scatter of the antenna amplitudes."""
AMPLITUDE_CLIP = (0.4, 1.8)
"""Amplitudes are kept within these (a real antenna outside would be flagged)."""
AMPLITUDE_DRIFT = 0.03
"""Standard deviation of each drift term's fractional amplitude."""
PHASE_DRIFT_DEG = 10.0
"""Standard deviation of each drift term's phase amplitude, degrees."""
DRIFT_TERMS = 2
"""Sinusoidal drift terms per antenna and polarisation."""
DRIFT_PERIOD_RANGE_H = (3.0, 12.0)
"""Periods of the drift terms, hours (smooth over a 5-minute chunk)."""
DELAY_SCATTER_NS = 3.0
"""Standard deviation of the antenna delays, ns."""
RIPPLE_AMPLITUDE = 0.05
"""Standard deviation of the bandpass ripple's fractional amplitude."""
RIPPLE_PHASE_DEG = 3.0
"""Standard deviation of the bandpass ripple's phase amplitude, degrees."""
RIPPLE_PERIOD_RANGE_HZ = (15e6, 60e6)
"""Periods of the bandpass ripple across the band, Hz."""
ROLLOFF_ORDER = 4
"""Order of each subband filter's roll-off (higher: steeper edges)."""
ROLLOFF_EDGE = 0.75
"""Power response (|R|^2) at the very edge of a subband."""

POLS = 2


def _rolloff(freq_hz: NDArray[np.float64], order: int, edge: float) -> NDArray[np.float64]:
    """Amplitude response of the subband filters at ``freq_hz`` (any shape): 1 at a subband's
    centre, sqrt(edge) at its edges (at the edge x = 0 or 1, |2x - 1| = 1)."""
    width = k.CHANNELS_PER_SUBBAND * k.CHANNEL_WIDTH_HZ
    top = k.SB00_TOP_FREQ_HZ + 0.5 * k.CHANNEL_WIDTH_HZ
    x = ((top - freq_hz) / width) % 1.0
    depth = 1.0 / edge - 1.0
    return np.asarray(1.0 / np.sqrt(1.0 + depth * np.abs(2 * x - 1) ** (2 * order)))


def true_gains(
    truth: dict[str, Any],
    time_jd: NDArray[np.float64],
    freq_hz: NDArray[np.float64],
    antennas: NDArray[np.int64] | None = None,
) -> NDArray[np.complex128]:
    """The simulated gain from the truth file's ``corruptions/gains`` record, shape
    (Ntimes, Nantennas, *freq.shape, 2 pols), for ``antennas`` (numbers; all by default)."""
    numbers = np.asarray(truth["antenna_numbers"], dtype=np.int64)
    rows = np.arange(len(numbers)) if antennas is None else np.searchsorted(numbers, antennas)
    p = {name: np.asarray(truth[name], dtype=np.float64)[rows] for name in _PARAMETERS}
    t_h = (np.asarray(time_jd, dtype=np.float64) - truth["reference_jd"]) * 24.0
    freq = np.asarray(freq_hz, dtype=np.float64)
    # Time part: (Nt, Nant, 2).
    angle = (
        2 * np.pi * t_h[:, None, None, None] / p["drift_period_h"][None] + p["drift_phase"][None]
    )
    amp = p["amplitude"][None] * (1.0 + (p["amplitude_drift"][None] * np.sin(angle)).sum(-1))
    angle2 = (
        2 * np.pi * t_h[:, None, None, None] / p["drift_period_h"][None]
        + p["phase_drift_phase"][None]
    )
    phase = p["phase_rad"][None] + (p["phase_drift_rad"][None] * np.sin(angle2)).sum(-1)
    g_t = amp * np.exp(1j * phase)  # (Nt, Nant, 2)
    # Frequency part: (Nant, *freq, 2).
    f = freq[None, ..., None]
    expand = (slice(None),) + (None,) * freq.ndim + (slice(None),)
    ripple = 2 * np.pi * f / p["ripple_period_hz"][expand]
    bandpass = (
        1.0 + p["ripple_amplitude"][expand] * np.cos(ripple + p["ripple_phase"][expand])
    ) * np.exp(
        1j
        * p["ripple_phase_amplitude_rad"][expand]
        * np.sin(ripple + p["ripple_phase_phase"][expand])
    )
    delay = np.exp(-2j * np.pi * f * p["delay_ns"][expand] * 1e-9)
    rolloff = _rolloff(freq, int(truth["rolloff_order"]), float(truth["rolloff_edge"]))
    g_f = bandpass * delay * rolloff[None, ..., None]
    t_expand = (slice(None), slice(None)) + (None,) * freq.ndim + (slice(None),)
    return np.asarray(g_t[t_expand] * g_f[None], dtype=np.complex128)


_PARAMETERS = (
    "amplitude",
    "amplitude_drift",
    "phase_rad",
    "phase_drift_rad",
    "drift_period_h",
    "drift_phase",
    "phase_drift_phase",
    "delay_ns",
    "ripple_amplitude",
    "ripple_phase",
    "ripple_phase_amplitude_rad",
    "ripple_phase_phase",
    "ripple_period_hz",
)
"""The per antenna and polarisation parameters of the truth record (arrays (Nant, 2[, terms]))."""


class AntennaGains:
    """Per antenna and polarisation gains, delays and bandpasses (see the module docstring)."""

    name = NAME

    def __init__(self, instrument: corruptions.InstrumentContext) -> None:
        rng = instrument.rng
        self.antennas = np.asarray(instrument.antenna_numbers, dtype=np.int64)
        shape = (len(self.antennas), POLS)
        terms = (*shape, DRIFT_TERMS)
        amplitude = 1.0 + AMPLITUDE_SCATTER * rng.standard_normal(shape)
        ripple_low, ripple_high = RIPPLE_PERIOD_RANGE_HZ
        self.parameters: dict[str, NDArray[np.float64]] = {
            "amplitude": np.clip(amplitude, *AMPLITUDE_CLIP),
            "amplitude_drift": AMPLITUDE_DRIFT * rng.standard_normal(terms),
            "phase_rad": rng.uniform(-math.pi, math.pi, shape),
            "phase_drift_rad": math.radians(PHASE_DRIFT_DEG) * rng.standard_normal(terms),
            "drift_period_h": rng.uniform(*DRIFT_PERIOD_RANGE_H, terms),
            "drift_phase": rng.uniform(0.0, 2 * math.pi, terms),
            "phase_drift_phase": rng.uniform(0.0, 2 * math.pi, terms),
            "delay_ns": DELAY_SCATTER_NS * rng.standard_normal(shape),
            "ripple_amplitude": RIPPLE_AMPLITUDE * rng.standard_normal(shape),
            "ripple_phase": rng.uniform(0.0, 2 * math.pi, shape),
            "ripple_phase_amplitude_rad": math.radians(RIPPLE_PHASE_DEG)
            * rng.standard_normal(shape),
            "ripple_phase_phase": rng.uniform(0.0, 2 * math.pi, shape),
            "ripple_period_hz": rng.uniform(ripple_low, ripple_high, shape),
        }
        self.reference_jd = instrument.start_jd
        self._record = self.truth()

    def truth(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "model": "g = A(t) exp(i phi(t)) exp(-2 pi i f tau) B(f) R(f); see corrupt_gains",
            "antenna_numbers": self.antennas.tolist(),
            "polarizations": ["X", "Y"],
            "reference_jd": self.reference_jd,
            "rolloff_order": ROLLOFF_ORDER,
            "rolloff_edge": ROLLOFF_EDGE,
        }
        record.update({name: value.tolist() for name, value in self.parameters.items()})
        return record

    def gains(
        self, time_jd: NDArray[np.float64], freq_hz: NDArray[np.float64]
    ) -> NDArray[np.complex128]:
        """The gains at ``time_jd`` and ``freq_hz``: (Nt, Nant, *freq.shape, 2)."""
        return true_gains(self._record, time_jd, freq_hz)

    def apply(self, vis: NDArray[np.complex64], chunk: corruptions.ChunkContext) -> None:
        rows_1 = np.searchsorted(self.antennas, chunk.ant_1)
        rows_2 = np.searchsorted(self.antennas, chunk.ant_2)
        g = self.gains(chunk.time_jd, chunk.freq_hz).astype(np.complex64)
        for t in range(vis.shape[0]):  # one integration at a time bounds the temporaries
            vis[t] *= g[t, rows_1] * np.conj(g[t, rows_2])


def _factory(instrument: corruptions.InstrumentContext) -> corruptions.Corruption:
    return AntennaGains(instrument)


corruptions.register("gains", _factory)
