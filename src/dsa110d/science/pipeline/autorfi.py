"""Interference seen in the autocorrelations, flagged on every baseline.

A terrestrial emitter reaches every antenna, so it adds power to every autocorrelation, where
the thermal noise is ~1e-4 of the power (SEFD / sqrt(bandwidth x time)): a median over
antennas and polarisations sees it at a fraction of the cross-correlations' sigma, however
bright the sky in the cross-correlations. Two tests, each against its own robust sigma:

- **along frequency** (narrowband lines, radars): the sky's continuum adds power smooth in
  frequency; an excess over the running median of ``window_mhz`` is interference;
- **along time** (broadband bursts): the sky drifting through the beam changes the power
  smoothly from one integration to the next; an excess over what the neighbouring
  integrations predict is interference. Only the channels with the excess are flagged, not
  the whole integration: a burst covers part of the band, and the rest stays clean.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from casacore import tables
from numpy.typing import NDArray

from dsa110d.science.pipeline.autos import Autos, quiet
from dsa110d.science.pipeline.flagging import MAD_TO_SIGMA

MIN_WINDOW_CHANNELS = 5
"""The fewest channels of the running median the autocorrelations are compared with."""
MIN_INTEGRATIONS_FOR_TIME = 3
"""Integrations a chunk needs before an integration can be predicted from its neighbours."""
TIME_PASSES = 3
"""Rounds of the time test: each predicts from the integrations the last round left clean
(a burst in a neighbour spoils its prediction)."""


def auto_rfi(
    autos: Autos, window_channels: int, n_sigma: float | None, burst_sigma: float | None
) -> NDArray[np.bool_]:
    """(Nt, Nchan): the integrations and channels to flag on every baseline (module doc)."""
    n_t, _, n_chan, _ = autos.power.shape
    if autos.empty:
        return np.zeros((n_t, n_chan), dtype=bool)
    flagged = np.zeros((n_t, n_chan), dtype=bool)
    if n_sigma is not None:
        with quiet():
            # each antenna's typical power (the bandpass shape kept: along frequency)
            cube = autos.power / np.nanmedian(autos.power, axis=(0, 2), keepdims=True)
            spectrum = np.nanmedian(cube, axis=(1, 3))  # (Nt, Nchan)
            excess = spectrum - _running_median(spectrum, window_channels)
        flagged |= _above(excess, n_sigma)
    if burst_sigma is not None and n_t >= MIN_INTEGRATIONS_FOR_TIME:
        with quiet():
            # each antenna's and channel's typical power (the bandpass divided out: along time)
            relative = autos.power / np.nanmedian(autos.power, axis=0, keepdims=True)
            series = np.nanmedian(relative, axis=(1, 3))  # (Nt, Nchan)
        flagged |= _time_excess(series, burst_sigma)
    return flagged


def _above(excess: NDArray[np.float64], n_sigma: float) -> NDArray[np.bool_]:
    """Where ``excess`` passes ``n_sigma`` of its robust sigma (none if that is not finite)."""
    with quiet():
        sigma = MAD_TO_SIGMA * np.nanmedian(np.abs(excess - np.nanmedian(excess)))
        if not np.isfinite(sigma) or sigma == 0:
            return np.zeros(excess.shape, dtype=bool)
        return np.asarray(excess > n_sigma * sigma)


def _time_excess(series: NDArray[np.float64], n_sigma: float) -> NDArray[np.bool_]:
    """(Nt, Nchan) where each channel's power exceeds its prediction from the neighbouring
    integrations by ``n_sigma`` robust sigmas. The prediction is linear, from the nearest
    known integration on either side (interpolated) or, at the chunk's ends, the two nearest
    on one side (extrapolated); an integration flagged in the last round, or without data
    (a dropped packet), is not known. The nearest neighbours come first: an extrapolation
    reaching over a clean integration between two bursts would call it a third."""
    n_t = series.shape[0]
    flagged = np.zeros(series.shape, dtype=bool)
    for _ in range(TIME_PASSES):
        known = np.where(flagged, np.nan, series)
        predicted = _predict(known, n_t)
        residual = series - predicted
        with quiet():
            # The noise from differences between adjacent channels, each integration on its
            # own: a burst is smooth across the channels it covers (and spoils the residuals
            # of its neighbours too, as many cells as it hits), and the predictions' noise
            # differs from the middle of the chunk to its ends.
            step = np.diff(residual, axis=1)
            sigma = (
                MAD_TO_SIGMA
                / np.sqrt(2)
                * np.nanmedian(
                    np.abs(step - np.nanmedian(step, axis=1, keepdims=True)), axis=1, keepdims=True
                )
            )
            now = np.asarray(residual > n_sigma * sigma)
        if np.array_equal(now, flagged):
            break
        flagged = now
    return flagged


def _predict(known: NDArray[np.float64], n_t: int) -> NDArray[np.float64]:
    """Each cell's linear prediction from the known cells of its channel (see _time_excess)."""
    rows = np.arange(n_t)[:, None]
    valid = np.isfinite(known)
    last = np.maximum.accumulate(np.where(valid, rows, -1), axis=0)  # at or before t
    first = np.minimum.accumulate(np.where(valid, rows, n_t)[::-1], axis=0)[::-1]  # at or after
    prev = np.vstack([np.full((1, known.shape[1]), -1), last[:-1]])
    nxt = np.vstack([first[1:], np.full((1, known.shape[1]), n_t)])
    cols = np.arange(known.shape[1])[None, :]
    padded = np.vstack([known, np.full((1, known.shape[1]), np.nan)])  # row n_t and -1: NaN

    def at(index: NDArray[np.int64]) -> NDArray[np.float64]:
        return np.asarray(padded[np.where(index < 0, n_t, index), cols])

    def clip(index: NDArray[np.int64]) -> NDArray[np.int64]:
        return np.clip(index, 0, n_t - 1)

    prev2 = np.where(prev > 0, last[clip(prev - 1), cols], -1)  # known before prev
    nxt2 = np.where(nxt < n_t - 1, first[clip(nxt + 1), cols], n_t)
    with quiet():
        inside = at(prev) + (at(nxt) - at(prev)) * (rows - prev) / (nxt - prev)
        from_before = at(prev) + (at(prev) - at(prev2)) * (rows - prev) / (prev - prev2)
        from_after = at(nxt) + (at(nxt) - at(nxt2)) * (rows - nxt) / (nxt - nxt2)
    return np.where(
        np.isfinite(inside), inside, np.where(np.isfinite(from_before), from_before, from_after)
    )


def window_channels(path: Path, window_mhz: float) -> int:
    """``window_mhz`` in the MS's channels: odd, at least MIN_WINDOW_CHANNELS."""
    with tables.table(f"{path}::SPECTRAL_WINDOW", ack=False) as spw:
        width_mhz = float(np.median(np.abs(spw.getcol("CHAN_WIDTH")[0]))) / 1e6
    channels = max(MIN_WINDOW_CHANNELS, round(window_mhz / width_mhz))
    return channels + 1 - channels % 2


def _running_median(spectrum: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    """The median of each channel's ``window`` neighbours (edges padded by reflection)."""
    half = window // 2
    padded = np.pad(spectrum, ((0, 0), (half, half)), mode="reflect")
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=1)
    with quiet():
        return np.asarray(np.nanmedian(views, axis=2))
