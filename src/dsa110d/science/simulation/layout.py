"""The simulated array and band: scales, antenna layout, baselines and channel frequencies.

``real`` is the instrument of DESIGN section 2. ``small`` and ``tiny`` keep the layout (117
antenna names, 16 subbands spanning the same band, one set per ~309 s) with fewer antennas,
coarser channels (each the mean of ``48 / channels`` real channels) and longer integrations
(each the average of ``24 / integrations`` real ones), so the files stay faithful in shape
while tests stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pyuvdata.utils import ECEF_from_ENU, XYZ_from_LatLonAlt

from dsa110d.science import constants as k

LAYOUT_SEED = 110
"""Fixed seed of the outrigger positions: the array does not change with ``--seed``."""
CORE_SPACING_M = 5.75
"""Spacing of the simulated core antennas, metres (close-packed 4.65 m dishes)."""
CORE_EW_COUNT = 48
"""Antennas along the simulated east-west core line."""
ARM_NS_COUNT = 35
"""Antennas along the simulated north-south arm."""
OUTRIGGER_RADIUS_M = 1250.0
"""Outriggers are scattered within this distance of the centre, metres."""
NO_DATA_ANTENNAS = (4, 11, 18, 25, 32, 39, 46, 53, 60, 67, 74, 81, 88, 95, 102, 106, 109, 111,
                    113, 115, 117)  # fmt: skip
"""Names (as ints) of the 21 of 117 antennas without data in the real-scale files."""


@dataclass(frozen=True)
class Scale:
    """How big the simulated files are."""

    name: str
    n_antennas: int
    """Antennas with data (of ``N_ANTENNAS_TELESCOPE``)."""
    channels_per_subband: int
    integrations: int

    @property
    def channel_width_hz(self) -> float:
        return k.CHANNEL_WIDTH_HZ * (k.CHANNELS_PER_SUBBAND // self.channels_per_subband)

    @property
    def integration_time_s(self) -> float:
        return k.INTEGRATION_TIME_S * (k.INTEGRATIONS_PER_FILE // self.integrations)

    @property
    def n_baselines(self) -> int:
        return self.n_antennas * (self.n_antennas + 1) // 2


SCALES = {
    "real": Scale("real", k.N_ANTENNAS_DATA, k.CHANNELS_PER_SUBBAND, k.INTEGRATIONS_PER_FILE),
    "small": Scale("small", 24, 12, 6),
    "tiny": Scale("tiny", 6, 4, 2),
}
"""The scales ``dsa110d simulate --scale`` offers."""


def antenna_names() -> list[str]:
    """All antenna names of the telescope, '1'..'117'."""
    return [str(n) for n in range(1, k.N_ANTENNAS_TELESCOPE + 1)]


def antenna_numbers() -> NDArray[np.int64]:
    """Antenna numbers 0..116 (number = name - 1)."""
    return np.arange(k.N_ANTENNAS_TELESCOPE, dtype=np.int64)


def antenna_enu_m() -> NDArray[np.float64]:
    """East-north-up positions of all 117 antennas, metres, shape (117, 3): a T like DSA-110."""
    ew = (np.arange(CORE_EW_COUNT) - (CORE_EW_COUNT - 1) / 2) * CORE_SPACING_M
    ns = -(np.arange(1, ARM_NS_COUNT + 1)) * CORE_SPACING_M * 4
    n_out = k.N_ANTENNAS_TELESCOPE - CORE_EW_COUNT - ARM_NS_COUNT
    rng = np.random.default_rng(LAYOUT_SEED)
    radius = OUTRIGGER_RADIUS_M * np.sqrt(rng.uniform(0.05, 1.0, n_out))
    angle = rng.uniform(0.0, 2 * np.pi, n_out)
    east = np.concatenate([ew, np.zeros(ARM_NS_COUNT), radius * np.cos(angle)])
    north = np.concatenate([np.zeros(CORE_EW_COUNT), ns, radius * np.sin(angle)])
    up = np.zeros_like(east)
    return np.stack([east, north, up], axis=1)


def telescope_ecef_m() -> NDArray[np.float64]:
    """ECEF (ITRF) position of the array reference, metres."""
    return np.asarray(
        XYZ_from_LatLonAlt(k.OVRO_LAT_RAD, k.OVRO_LON_RAD, k.OVRO_HEIGHT_M), dtype=np.float64
    )


def antenna_positions_ecef_rel_m() -> NDArray[np.float64]:
    """Antenna positions relative to the array reference in ECEF axes, metres (UVH5's
    ``antenna_positions``), shape (117, 3)."""
    ecef = ECEF_from_ENU(
        antenna_enu_m(),
        latitude=k.OVRO_LAT_RAD,
        longitude=k.OVRO_LON_RAD,
        altitude=k.OVRO_HEIGHT_M,
    )
    return np.asarray(ecef - telescope_ecef_m(), dtype=np.float64)


def data_antennas(scale: Scale) -> NDArray[np.int64]:
    """Numbers (0-based) of the antennas with data at ``scale``, ascending."""
    excluded = np.array(NO_DATA_ANTENNAS, dtype=np.int64) - 1
    with_data = np.setdiff1d(antenna_numbers(), excluded)
    if scale.n_antennas >= len(with_data):
        return with_data
    pick = np.linspace(0, len(with_data) - 1, scale.n_antennas).round().astype(np.int64)
    return with_data[pick]


def baselines(scale: Scale) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(ant_1, ant_2) of every baseline with ant_1 <= ant_2, autocorrelations included, in
    the correlator's order (by ant_1, then ant_2)."""
    ants = data_antennas(scale)
    i, j = np.triu_indices(len(ants))
    return ants[i], ants[j]


def subband_frequencies_hz(scale: Scale, subband: int) -> NDArray[np.float64]:
    """Channel centre frequencies of ``subband``, Hz, descending (sb00 is the highest)."""
    fine = (
        k.SB00_TOP_FREQ_HZ
        - (subband * k.CHANNELS_PER_SUBBAND + np.arange(k.CHANNELS_PER_SUBBAND))
        * k.CHANNEL_WIDTH_HZ
    )
    factor = k.CHANNELS_PER_SUBBAND // scale.channels_per_subband
    return np.asarray(fine.reshape(scale.channels_per_subband, factor).mean(axis=1))


def band_frequencies_hz(scale: Scale, n_subbands: int) -> NDArray[np.float64]:
    """Frequencies of ``n_subbands`` subbands stacked, shape (n_subbands, channels)."""
    return np.stack([subband_frequencies_hz(scale, s) for s in range(n_subbands)])
