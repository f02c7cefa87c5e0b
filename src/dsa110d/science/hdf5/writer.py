"""Write a subband file in the real correlator's UVH5 layout (DESIGN section 2), with h5py.

The header is written first and the data datasets are allocated at full size, then filled
chunk by chunk (``SubbandWriter.write``), so a real-scale set never sits in memory at once.
The layout is the correlator's older UVH5 form: ``Data/*`` of shape (Nblts, 1, Nfreqs, Npols),
``freq_array`` of shape (1, Nfreqs), ``phase_type`` "drift", float32 ``uvw_array``.

Reading with pyuvdata 3: like the real files, these need ``file_type="uvh5"`` (the ``.hdf5``
suffix is not recognised) and ``run_check=False`` (pyuvdata requires float64 uvw), then
``uv.uvw_array = uv.uvw_array.astype(np.float64); uv.check()`` passes. Off the zenith
(pointing dec != latitude) ``check()`` also warns that the uvws do not match the unprojected
antenna positions, as it does for the real drift files: their uvws are for the meridian at
the pointing declination, not the zenith.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from dsa110d.science import constants as k
from dsa110d.science.hdf5.schema import DATA_GROUP, HEADER_GROUP

UVH5_VERSION = "1.0"
"""``Header/version`` of the files written (the UVH5 memo's version string)."""


@dataclass(frozen=True)
class SubbandHeader:
    """Everything in ``Header/`` of one subband file."""

    time_jd: NDArray[np.float64]
    """Per baseline-time, shape (Nblts,)."""
    lst_rad: NDArray[np.float64]
    uvw_m: NDArray[np.float64]
    ant_1: NDArray[np.int64]
    ant_2: NDArray[np.int64]
    freq_hz: NDArray[np.float64]
    """Channel centres, descending, shape (Nfreqs,)."""
    channel_width_hz: float
    integration_s: float
    n_times: int
    n_bls: int
    antenna_names: list[str]
    antenna_numbers: NDArray[np.int64]
    antenna_positions_m: NDArray[np.float64]
    phase_center_dec_rad: float
    history: str = "Simulated by dsa110d simulate."
    extra_keywords: dict[str, Any] = field(default_factory=dict)


def _write_header(group: h5py.Group, h: SubbandHeader) -> None:
    n_blts, n_freqs = len(h.time_jd), len(h.freq_hz)
    ants_data = np.union1d(h.ant_1, h.ant_2)
    scalars: dict[str, Any] = {
        "latitude": np.float64(k.OVRO_LAT_DEG),
        "longitude": np.float64(k.OVRO_LON_DEG),
        "altitude": np.float64(k.OVRO_HEIGHT_M),
        "telescope_name": np.bytes_(k.TELESCOPE_NAME),
        "instrument": np.bytes_(k.INSTRUMENT_NAME),
        "object_name": np.bytes_("drift"),
        "phase_type": np.bytes_("drift"),
        "vis_units": np.bytes_("Jy"),
        "x_orientation": np.bytes_("east"),
        "history": np.bytes_(h.history),
        "version": np.bytes_(UVH5_VERSION),
        "Nants_data": np.int64(len(ants_data)),
        "Nants_telescope": np.int64(len(h.antenna_names)),
        "Nbls": np.int64(h.n_bls),
        "Nblts": np.int64(n_blts),
        "Nfreqs": np.int64(n_freqs),
        "Npols": np.int64(len(k.POLARIZATION_ARRAY)),
        "Nspws": np.int64(1),
        "Ntimes": np.int64(h.n_times),
        "channel_width": np.float64(h.channel_width_hz),
        "flex_spw": np.bool_(False),
    }
    for name, value in scalars.items():
        group.create_dataset(name, data=value)
    arrays: dict[str, NDArray[Any]] = {
        "time_array": h.time_jd,
        "lst_array": h.lst_rad,
        "integration_time": np.full(n_blts, h.integration_s, dtype=np.float64),
        "uvw_array": h.uvw_m.astype(np.float32),
        "ant_1_array": h.ant_1.astype(np.int64),
        "ant_2_array": h.ant_2.astype(np.int64),
        "freq_array": h.freq_hz.reshape(1, n_freqs).astype(np.float64),
        "spw_array": np.array([0], dtype=np.int64),
        "polarization_array": np.array(k.POLARIZATION_ARRAY, dtype=np.int64),
        "antenna_numbers": h.antenna_numbers.astype(np.int64),
        "antenna_names": np.array([n.encode() for n in h.antenna_names]),
        "antenna_positions": h.antenna_positions_m.astype(np.float64),
        "antenna_diameters": np.full(len(h.antenna_names), k.DISH_DIAMETER_M),
    }
    for name, array in arrays.items():
        group.create_dataset(name, data=array)
    extra = group.create_group("extra_keywords")
    extra.create_dataset("phase_center_dec", data=np.float64(h.phase_center_dec_rad))
    for name, value in h.extra_keywords.items():
        extra.create_dataset(name, data=value)


class SubbandWriter:
    """One open subband file: header written, data filled by integration chunks."""

    def __init__(self, path: Path, header: SubbandHeader) -> None:
        self.path = path
        self.n_bls = header.n_bls
        self._file = h5py.File(path, "w")
        try:
            _write_header(self._file.create_group(HEADER_GROUP), header)
            shape = (len(header.time_jd), 1, len(header.freq_hz), len(k.POLARIZATION_ARRAY))
            data = self._file.create_group(DATA_GROUP)
            self._vis = data.create_dataset("visdata", shape=shape, dtype=np.complex64)
            data.create_dataset("flags", data=np.zeros(shape, dtype=np.bool_))
            data.create_dataset("nsamples", data=np.ones(shape, dtype=np.float32))
        except BaseException:
            self._file.close()
            raise

    def write(self, first_integration: int, vis: NDArray[np.complex64]) -> None:
        """Store ``vis`` of shape (nt, Nbls, Nfreqs, Npols) from ``first_integration`` on."""
        start = first_integration * self.n_bls
        rows = vis.shape[0] * vis.shape[1]
        self._vis[start : start + rows, 0] = vis.reshape(rows, *vis.shape[2:])

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SubbandWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
