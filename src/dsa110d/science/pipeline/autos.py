"""The autocorrelations of a Measurement Set as one cube, for the passes that judge antennas
and interference from them (:mod:`health`, :mod:`autorfi`)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from casacore import tables
from numpy.typing import NDArray


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Statistics over samples that may all be absent (NaN: dropped packets, zeros): their
    NaN result is expected and handled, so numpy's warnings about it are not wanted."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@dataclass(frozen=True)
class Autos:
    """(Nt, Nant, Nchan, Npol) autocorrelation power (NaN: absent or zero), the antennas in
    ascending order (0-based numbers) and the integrations' times (MJD seconds)."""

    power: NDArray[np.float64]
    antennas: NDArray[np.int64]
    times: NDArray[np.float64]

    @property
    def empty(self) -> bool:
        return self.power.size == 0


def read_autos(path: Path) -> Autos:
    """The autocorrelations of the MS at ``path``."""
    with tables.table(str(path), ack=False) as ms:
        autos = ms.query("ANTENNA1 == ANTENNA2", columns="TIME,ANTENNA1,DATA")
        with autos:
            if autos.nrows() == 0:
                return Autos(np.zeros((0, 0, 0, 0)), np.zeros(0, np.int64), np.zeros(0))
            times, ants = autos.getcol("TIME"), autos.getcol("ANTENNA1")
            power = np.abs(autos.getcol("DATA")).astype(np.float64)  # (rows, Nchan, Npol)
    power[power == 0] = np.nan
    t_values, t_index = np.unique(times, return_inverse=True)
    antennas, a_index = np.unique(ants, return_inverse=True)
    cube = np.full((len(t_values), len(antennas), *power.shape[1:]), np.nan)
    cube[t_index, a_index] = power
    return Autos(cube, antennas.astype(np.int64), t_values)
