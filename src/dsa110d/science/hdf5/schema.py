"""The layout of a DSA-110 subband file (UVH5, DESIGN section 2), named once.

The watcher's probe (:mod:`.subbands`), the converter's reader (:mod:`.reader`) and the
simulator's writer (:mod:`.writer`) all go by these names. The probe needs only what decides a
file's set and whether it is whole (:data:`PROBE_HEADER`); the reader needs everything the
conversion uses (:data:`READ_HEADER`, which includes it).
"""

from __future__ import annotations

HEADER_GROUP = "Header"
DATA_GROUP = "Data"
DATA_DATASETS = ("visdata", "flags", "nsamples")
"""``Data/`` datasets, each (Nblts, [1,] Nfreqs, Npols)."""
PROBE_HEADER = (
    "time_array",
    "integration_time",
    "ant_1_array",
    "ant_2_array",
    "uvw_array",
    "freq_array",
    "polarization_array",
    "Nblts",
    "Nfreqs",
    "Npols",
    "Nants_data",
)
"""``Header/`` datasets a subband must have for the watcher to count it."""
READ_HEADER = (
    "Nblts",
    "Nfreqs",
    "Npols",
    "ant_1_array",
    "ant_2_array",
    "time_array",
    "integration_time",
    "freq_array",
    "channel_width",
    "polarization_array",
    "antenna_numbers",
    "antenna_names",
    "antenna_positions",
    "latitude",
    "longitude",
    "altitude",
    "telescope_name",
    "extra_keywords/phase_center_dec",
)
"""``Header/`` datasets the converter reads (a file without one is refused)."""
