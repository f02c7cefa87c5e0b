"""Antenna health from the autocorrelations of a block: dead, hot and unstable antennas.

An antenna whose power is below ``flagging.dead_power_fraction`` of the array's median is
*dead*, above ``flagging.hot_power_factor`` times it *hot*; one whose power relative to the
array's (common changes, the Sun or the Galaxy, divided out) scatters by more than
``flagging.unstable_rms`` about a quadratic trend over the block is *unstable*. Each
polarisation is judged on its own; an antenna bad in either is flagged in both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dsa110d.config import Config
from dsa110d.science.pipeline.autos import quiet, read_autos

log = logging.getLogger(__name__)

UNSTABLE_VS_ARRAY = 5.0
"""An unstable antenna scatters by more than this many times the array's median scatter."""
MIN_SAMPLES_FOR_TREND = 6
"""Integrations a block needs before antenna stability is judged (a quadratic has 3 terms)."""


@dataclass(frozen=True)
class Health:
    """The antennas judged bad from the block's autocorrelations, by kind (0-based numbers)."""

    dead: tuple[int, ...] = ()
    hot: tuple[int, ...] = ()
    unstable: tuple[int, ...] = ()
    power_ratio: dict[int, float] = field(default_factory=dict)
    """Each antenna's median autocorrelation power / the array's median."""

    @property
    def bad(self) -> tuple[int, ...]:
        return tuple(sorted({*self.dead, *self.hot, *self.unstable}))


def antenna_health(ms_paths: Sequence[Path], config: Config) -> Health:
    """Dead, hot and unstable antennas from the autocorrelations of the block's MSs."""
    cubes, antennas = [], None
    for path in ms_paths:
        autos = read_autos(path)
        if autos.empty:
            continue
        if antennas is not None and not np.array_equal(autos.antennas, antennas):
            log.warning("%s: other antennas than the block's first MS; health from the first", path)
            continue
        antennas = autos.antennas
        with quiet():
            cubes.append(np.nanmedian(autos.power, axis=2))  # (Nt, Nant, Npol) over channels
    if antennas is None:
        return Health()
    power = np.concatenate(cubes)
    cfg = config.flagging
    with quiet():
        level = np.nanmedian(power, axis=0)  # (Nant, Npol)
        ratio = level / np.nanmedian(level, axis=0)
        dead = np.any(ratio < cfg.dead_power_fraction, axis=1) | np.all(np.isnan(ratio), axis=1)
        hot = np.any(ratio > cfg.hot_power_factor, axis=1) & ~dead
        unstable = _unstable(power, cfg.unstable_rms) & ~dead & ~hot
    names = [int(a) for a in antennas]
    return Health(
        dead=tuple(a for a, d in zip(names, dead, strict=True) if d),
        hot=tuple(a for a, h in zip(names, hot, strict=True) if h),
        unstable=tuple(a for a, u in zip(names, unstable, strict=True) if u),
        power_ratio={a: float(np.nanmax(r)) for a, r in zip(names, ratio, strict=True)},
    )


def _unstable(power: NDArray[np.float64], limit: float) -> NDArray[np.bool_]:
    """Antennas whose power relative to the array's median at each integration scatters about
    a quadratic in time by more than ``limit`` (rms / median) and by more than
    UNSTABLE_VS_ARRAY times the array's median scatter, in either polarisation. The second
    bound keeps autocorrelations that all scatter (thermal noise at a short integration, a
    correlator glitch) from condemning the whole array."""
    n_t, n_ant, _ = power.shape
    if n_t < MIN_SAMPLES_FOR_TREND:
        return np.zeros(n_ant, dtype=bool)
    with quiet():
        relative = power / np.nanmedian(power, axis=1, keepdims=True)
        relative /= np.nanmedian(relative, axis=0, keepdims=True)
    t = np.linspace(-1.0, 1.0, n_t)
    scatter = np.zeros(n_ant)
    for a in range(n_ant):
        for series in relative[:, a].T:
            good = np.isfinite(series)
            if good.sum() < MIN_SAMPLES_FOR_TREND:
                continue
            fit = np.polyval(np.polyfit(t[good], series[good], 2), t[good])
            rms = float(np.sqrt(np.mean((series[good] - fit) ** 2)))
            scatter[a] = max(scatter[a], rms)
    return np.asarray(scatter > max(limit, UNSTABLE_VS_ARRAY * float(np.median(scatter))))
