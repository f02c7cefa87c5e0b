"""Creating a Measurement Set with python-casacore: the main table and its subtables.

The main table's bulk columns (DATA, FLAG and, when needed, WEIGHT_SPECTRUM) have a fixed
cell shape and live in TiledColumnStMan with tiles of whole rows, so writing a large block
of rows with ``putcol`` at a start row is one sequential write. The subtables follow the layout that
pyuvdata writes (its ``utils.io.ms`` writers, called with explicit values), so pyuvdata,
CASA and casacore all read them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from astropy.time import Time
from casacore import tables
from pyuvdata.utils.io import ms as ms_utils
from pyuvdata.utils.phase_center_catalog import generate_phase_center_cat_entry

from dsa110d.science.constants import SECONDS_PER_DAY
from dsa110d.science.conversion.phasing import PHASE_EPOCH, PHASE_FRAME, PhaseCentre

TILE_ROWS = 64  # rows per tile of the bulk columns; a DATA tile of 768x2 channels is ~0.8 MB
FIELD_NAME = "meridian"


@dataclass(frozen=True)
class MainShape:
    """The main table's size: rows and the (channel, polarisation) cell shape."""

    nrows: int
    nchan: int
    npol: int


def _bulk(
    name: str, value: object, valuetype: str, shape: MainShape, comment: str
) -> dict[str, object]:
    desc: dict[str, object] = tables.makearrcoldesc(
        name,
        value,
        valuetype=valuetype,
        shape=[shape.nchan, shape.npol],
        datamanagertype="TiledColumnStMan",
        datamanagergroup=f"Tiled{name}",
        comment=comment,
    )
    return desc


def create_main(path: Path, shape: MainShape) -> tables.table:
    """Create the MS (main table plus empty required subtables) with ``shape.nrows`` rows."""
    desc = tables.required_ms_desc("MAIN")
    flag_desc = _bulk("FLAG", False, "boolean", shape, "The data flags")
    desc["FLAG"] = flag_desc["desc"]
    desc.update(tables.maketabdesc([_bulk("DATA", 0j, "complex", shape, "The data column")]))
    desc["UVW"].update(dataManagerType="TiledColumnStMan", dataManagerGroup="TiledUVW")
    for key in ("WEIGHT", "SIGMA"):
        desc[key].update(
            dataManagerType="TiledColumnStMan",
            dataManagerGroup=f"Tiled{key}",
            shape=np.array([shape.npol], dtype=np.int32),
            ndim=1,
            option=4,  # FixedShape
        )
    desc["FLAG_CATEGORY"].update(
        dataManagerType="TiledShapeStMan",
        dataManagerGroup="TiledFlagCategory",
        keywords={"CATEGORY": np.array("baddata")},
    )
    cell = [shape.npol, shape.nchan, TILE_ROWS]  # casacore (Fortran) axis order
    spec = {
        "TiledDATA": {"DEFAULTTILESHAPE": np.array(cell, dtype=np.int32)},
        "TiledFLAG": {"DEFAULTTILESHAPE": np.array(cell, dtype=np.int32)},
        "TiledUVW": {"DEFAULTTILESHAPE": np.array([3, 1024], dtype=np.int32)},
        "TiledWEIGHT": {"DEFAULTTILESHAPE": np.array([shape.npol, 1024], dtype=np.int32)},
        "TiledSIGMA": {"DEFAULTTILESHAPE": np.array([shape.npol, 1024], dtype=np.int32)},
    }
    dminfo = tables.makedminfo(desc, spec)
    table = tables.default_ms(str(path), desc, dminfo)
    table.addrows(shape.nrows)
    return table


def add_weight_spectrum(table: tables.table, shape: MainShape) -> None:
    """Add WEIGHT_SPECTRUM (per-channel nsamples). Written only for sets whose nsamples
    vary across a row's channels: otherwise WEIGHT says the same in 1/768th of the bytes."""
    desc = tables.maketabdesc(
        [_bulk("WEIGHT_SPECTRUM", 0.0, "float", shape, "Weight for each data point")]
    )
    cell = np.array([shape.npol, shape.nchan, TILE_ROWS], dtype=np.int32)
    dminfo = tables.makedminfo(desc, {"TiledWEIGHT_SPECTRUM": {"DEFAULTTILESHAPE": cell}})
    table.addcols(desc, dminfo)


def mjd_seconds(times_jd: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """MS TIME (MJD seconds, UTC) from JD, converted once per unique time as pyuvdata does."""
    unique, inverse = np.unique(times_jd, return_inverse=True)
    return np.asarray(Time(unique, format="jd", scale="utc").mjd * SECONDS_PER_DAY)[inverse]


@dataclass(frozen=True)
class Pointing:
    """Where the dishes point at each integration: ICRS (J2000) RA/Dec, rad."""

    times_jd: npt.NDArray[np.float64]
    interval_s: npt.NDArray[np.float64]
    ra: npt.NDArray[np.float64]
    dec: npt.NDArray[np.float64]


@dataclass(frozen=True)
class SetMetadata:
    """What the subtables record about one set."""

    telescope_name: str
    telescope_xyz: npt.NDArray[np.float64]  # m, ITRF
    antenna_numbers: npt.NDArray[np.int64]
    antenna_names: tuple[str, ...]
    antenna_positions: npt.NDArray[np.float64]  # m, relative to telescope_xyz
    antenna_diameters: npt.NDArray[np.float64]
    freq_hz: npt.NDArray[np.float64]  # ascending
    channel_width_hz: npt.NDArray[np.float64]
    polarizations: npt.NDArray[np.int64]
    centre: PhaseCentre
    pointing: Pointing
    mid_time_jd: float
    history: str
    vis_units: str


def phase_center_catalog(centre: PhaseCentre) -> dict[int, dict[str, object]]:
    """The one-entry catalog pyuvdata's ``phase(ra, dec, epoch='J2000')`` makes."""
    entry = generate_phase_center_cat_entry(
        cat_name=FIELD_NAME,
        cat_type="sidereal",
        cat_lon=centre.ra,
        cat_lat=centre.dec,
        cat_frame=PHASE_FRAME,
        cat_epoch=PHASE_EPOCH,
    )
    return {0: entry}


def write_subtables(path: Path, meta: SetMetadata) -> None:
    """Fill ANTENNA, SPECTRAL_WINDOW, POLARIZATION, FIELD, SOURCE, OBSERVATION, FEED,
    DATA_DESCRIPTION and HISTORY."""
    ms = str(path)
    mid = float(mjd_seconds(np.array([meta.mid_time_jd]))[0])
    catalog = phase_center_catalog(meta.centre)
    ms_utils.write_ms_antenna(
        ms,
        antenna_numbers=meta.antenna_numbers,
        antenna_names=list(meta.antenna_names),
        antenna_positions=meta.antenna_positions,
        antenna_diameters=meta.antenna_diameters,
        telescope_location=meta.telescope_xyz,
        telescope_frame="itrs",
    )
    ms_utils.write_ms_data_description(ms, nspws=1, flex_spw_polarization_array=None)
    feeds = _feeds(meta.polarizations)
    ms_utils.write_ms_feed(
        ms,
        nfeeds=len(feeds),
        nspws=1,
        feed_array=np.tile(feeds, (meta.antenna_numbers.size, 1)),
        feed_angle=np.zeros((meta.antenna_numbers.size, len(feeds))),
        antenna_numbers=meta.antenna_numbers,
        time_val=mid,
    )
    ms_utils.write_ms_field(ms, phase_center_catalog=catalog, time_val=mid)
    ms_utils.write_ms_source(ms, time_default=mid, phase_center_catalog=catalog)
    ms_utils.write_ms_history(ms, history=meta.history)
    write_pointing(path, meta.antenna_numbers, meta.pointing)
    ms_utils.write_ms_observation(
        ms,
        telescope_name=meta.telescope_name,
        telescope_location=meta.telescope_xyz,
        observer="dsa110d",
    )
    ms_utils.write_ms_polarization(ms, polarization_array=meta.polarizations)
    ms_utils.write_ms_spectral_window(
        ms,
        freq_array=meta.freq_hz,
        channel_width=meta.channel_width_hz,
        spw_array=np.array([0]),
        id_array=np.zeros(meta.freq_hz.size, dtype=int),
    )


POINTING_NAME = "meridian"


def write_pointing(path: Path, antenna_numbers: npt.NDArray[np.int64], pointing: Pointing) -> None:
    """One POINTING row per integration and antenna (every dish points the same way: the
    meridian at the pointing declination, moving through RA at the sidereal rate)."""
    n_ant = int(np.max(antenna_numbers)) + 1  # ANTENNA_ID is a row of the ANTENNA table
    times = mjd_seconds(pointing.times_jd)
    n_t = times.size
    nrows = n_ant * n_t
    direction = np.empty((nrows, 2, 1), dtype=np.float64)
    direction[:, 0, 0] = np.repeat(pointing.ra, n_ant)
    direction[:, 1, 0] = np.repeat(pointing.dec, n_ant)
    with tables.table(f"{path}::POINTING", ack=False, readonly=False) as table:
        table.addrows(1)  # a first cell fixes the (2, 1) shape (pyuvdata's workaround)
        table.putcell("DIRECTION", 0, np.zeros((2, 1)))
        table.putcell("TARGET", 0, np.zeros((2, 1)))
        table.addrows(nrows - 1)
        table.putcol("ANTENNA_ID", np.tile(np.arange(n_ant, dtype=np.int32), n_t))
        table.putcol("TIME", np.repeat(times, n_ant))
        table.putcol("TIME_ORIGIN", np.repeat(times, n_ant))
        table.putcol("INTERVAL", np.repeat(pointing.interval_s, n_ant))
        table.putcol("NAME", np.asarray([POINTING_NAME] * nrows, dtype=np.bytes_))
        table.putcol("NUM_POLY", np.zeros(nrows, dtype=np.int32))
        table.putcol("DIRECTION", direction)
        table.putcol("TARGET", direction)
        table.putcol("TRACKING", np.zeros(nrows, dtype=bool))


def read_pointing(path: Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(MS TIME s, (RA, Dec) rad per time) of antenna 0's POINTING rows, time-ordered."""
    with tables.table(f"{path}::POINTING", ack=False) as table:
        if table.nrows() == 0:
            return np.zeros(0), np.zeros((0, 2))
        ant = table.getcol("ANTENNA_ID")
        times = np.asarray(table.getcol("TIME"))[ant == ant.min()]
        direction = np.asarray(table.getcol("DIRECTION"))[ant == ant.min(), :, 0]
    order = np.argsort(times)
    return times[order], direction[order]


def _feeds(polarizations: npt.NDArray[np.int64]) -> list[str]:
    from pyuvdata.utils.pol import get_feeds_from_pols

    return sorted(get_feeds_from_pols(polarizations))


def write_main_keywords(table: tables.table, vis_units: str) -> None:
    """Units of DATA, and the conjugation convention pyuvdata reads back."""
    table.putcolkeyword("DATA", "QuantumUnits", vis_units)
    table.putkeyword("pyuvdata_flip_conj", True)
