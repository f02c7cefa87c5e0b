"""The DSA-110 instrument's constants, each with its unit and source, defined once.

Sources: ``DESIGN`` = /work/shared/DESIGN.md section 2 (facts from the real correlator's files);
``CASA`` = the CASA observatories table entry OVRO_MMA, which the DSA-110 calibration code
(dsacalib) uses as the array's reference position.
"""

from __future__ import annotations

import math
from typing import Final

# --- Site (CASA observatories table, OVRO_MMA; as used by dsacalib) -----------------------
OVRO_LAT_RAD: Final = 0.6498455107238486
"""Geodetic latitude of the array reference position, radians (37.2334 deg N). CASA."""
OVRO_LON_RAD: Final = -2.064427799136453
"""East longitude of the array reference position, radians (-118.2834 deg). CASA."""
OVRO_HEIGHT_M: Final = 1188.0519
"""Height above the WGS84 ellipsoid, metres. CASA."""
OVRO_LAT_DEG: Final = math.degrees(OVRO_LAT_RAD)
OVRO_LON_DEG: Final = math.degrees(OVRO_LON_RAD)
TELESCOPE_NAME: Final = "OVRO_MMA"
"""``Header/telescope_name`` in the real files (CASA recognises it; DSA-110 is unknown). DESIGN."""
INSTRUMENT_NAME: Final = "DSA"
"""``Header/instrument`` written by the simulator."""

# --- Antennas -----------------------------------------------------------------------------
DISH_DIAMETER_M: Final = 4.65
"""Dish diameter, metres. DESIGN."""
N_ANTENNAS_TELESCOPE: Final = 117
"""Antennas in the telescope, named '1'..'117'. DESIGN."""
N_ANTENNAS_DATA: Final = 96
"""Antennas with data in a file. DESIGN."""
N_BASELINES_DATA: Final = N_ANTENNAS_DATA * (N_ANTENNAS_DATA + 1) // 2
"""Baselines with autocorrelations: 96*97/2 = 4656. DESIGN."""

# --- Frequency ------------------------------------------------------------------------------
CHANNEL_WIDTH_HZ: Final = 244140.625
"""Channel width, Hz (250 MHz / 1024). DESIGN."""
CHANNELS_PER_SUBBAND: Final = 48
"""Channels per subband file. DESIGN."""
N_SUBBANDS: Final = 16
"""Subband files per set, sb00..sb15. DESIGN."""
N_CHANNELS_TOTAL: Final = CHANNELS_PER_SUBBAND * N_SUBBANDS
"""768 channels across the band. DESIGN."""
SB00_TOP_FREQ_HZ: Final = 1498.75e6
"""Frequency of the first (highest) channel of sb00, Hz; channels descend from it. DESIGN."""
BAND_BOTTOM_FREQ_HZ: Final = SB00_TOP_FREQ_HZ - (N_CHANNELS_TOTAL - 1) * CHANNEL_WIDTH_HZ
"""Frequency of the last (lowest) channel of sb15, Hz (~1311.25 MHz). DESIGN."""

# --- Polarisation ----------------------------------------------------------------------------
POLARIZATION_ARRAY: Final = (-5, -6)
"""AIPS polarisation codes XX, YY (``Header/polarization_array``). DESIGN."""

# --- Time ------------------------------------------------------------------------------------
INTEGRATION_TIME_S: Final = 12.884902
"""Integration time, seconds. DESIGN."""
INTEGRATIONS_PER_FILE: Final = 24
"""Integrations in one subband file. DESIGN."""
FILE_DURATION_S: Final = INTEGRATION_TIME_S * INTEGRATIONS_PER_FILE
"""Span of one file (one set), ~309.24 s. DESIGN."""
SIDEREAL_DAY_S: Final = 86164.0905
"""Mean sidereal day, SI seconds (IERS conventions)."""
SECONDS_PER_DAY: Final = 86400.0
"""Seconds in a day of the MJD/JD scales (UTC days as used by the MS TIME column and UVH5)."""

# --- Epochs ----------------------------------------------------------------------------------
MJD_TO_JD: Final = 2400000.5
"""JD of MJD 0 (1858-11-17T00:00): JD = MJD + MJD_TO_JD. IAU."""
UNIX_EPOCH_MJD: Final = 40587.0
"""1970-01-01T00:00:00 UTC as an MJD. IAU."""
UNIX_EPOCH_JD: Final = UNIX_EPOCH_MJD + MJD_TO_JD
"""1970-01-01T00:00:00 UTC as a JD (2440587.5)."""
UNIX_EPOCH_MJD_S: Final = UNIX_EPOCH_MJD * SECONDS_PER_DAY
"""1970-01-01T00:00:00 UTC in MJD seconds (the scale of the MS TIME column)."""

# --- Physics ---------------------------------------------------------------------------------
SPEED_OF_LIGHT_M_S: Final = 299_792_458.0
"""Speed of light in vacuum, m/s, exact (SI); pyuvdata uses astropy's, the same value."""

# --- Noise -----------------------------------------------------------------------------------
SEFD_JY: Final = 5800.0
"""System equivalent flux density of one dish, Jy: 2 k Tsys / (eta A) with Tsys ~ 25 K and
aperture efficiency ~0.7 for a 4.65 m dish. A stated assumption of the simulator."""

# --- Files -----------------------------------------------------------------------------------
SUBBAND_NAME_REGEX: Final = (
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})_sb([0-9]{2})\.hdf5"
)
"""The real subband file name, matched whole (``fullmatch``). DESIGN. ASCII digits only:
``\\d`` would accept any Unicode digit ('\\u0662'), which ``int`` and ``strptime`` read."""
NAME_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S"
"""``strftime`` format of the timestamp in a subband file name. DESIGN."""
SUBBAND_FILE_BYTES_REAL: Final = 140e6
"""Approximate size of one real subband file, bytes. DESIGN."""

# --- Plausible header values (the watcher's probe refuses a file outside them) ---------------
ERA_START_JD: Final = 2457023.5
"""2015-01-01T00:00:00 UTC as a Julian date: no DSA-110 file is older (the array was built
from 2018 on; the margin covers test data and prototypes)."""
ERA_END_JD: Final = 2488069.5
"""2100-01-01T00:00:00 UTC as a Julian date: the end of the instrument's plausible era."""
RADIO_FREQ_MIN_HZ: Final = 10e6
"""Lowest plausible channel frequency, Hz: the ionosphere's cutoff for ground-based radio
astronomy is ~10 MHz."""
RADIO_FREQ_MAX_HZ: Final = 1e12
"""Highest plausible channel frequency, Hz: 1 THz, the top of the radio/submillimetre window."""
MAX_INTEGRATION_S: Final = 86400.0
"""Longest plausible ``integration_time``, seconds (one day; DSA-110 integrates 12.9 s)."""
NAME_TIME_TOLERANCE_S: Final = 180.0
"""How far a file name's timestamp (the correlator node's wall clock at the file's start) may
lie from the start of its first integration (``time_array[0]`` less half an integration),
seconds: the nodes' clocks agree to a few seconds (DESIGN), so three minutes is a fault."""
DEFLATE_MAX_RATIO: Final = 1032
"""The deflate format's largest compression ratio (zlib technical details): no dataset in a
file can hold more than this many bytes per byte of the file."""
