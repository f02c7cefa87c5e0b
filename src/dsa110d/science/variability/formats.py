"""Light curves and candidates in the field's formats: CSV and IVOA VOTable (astropy).

Columns carry units and UCDs (IVOA UCD1+) so TOPCAT, astropy and the VO tools read them as what
they are: times MJD (UTC), flux densities Jy, positions ICRS degrees. Every file is written
through ``atomic_file``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import votable
from astropy.table import Table

from dsa110d.science.atomic import atomic_file

LIGHT_CURVE_COLUMNS = ("source_id", "block_id", "mjd", "flux_jy", "flux_err_jy")

COLUMN_META: dict[str, tuple[str | None, str, str]] = {
    # column: (unit, UCD, description)
    "source_id": (None, "meta.id;meta.main", "Catalog source id"),
    "block_id": (None, "meta.id", "Block (UTC start of its hour) the measurement comes from"),
    "mjd": ("d", "time.epoch", "Beam-weighted mean time of the measurement, MJD (UTC)"),
    "flux_jy": ("Jy", "phot.flux.density;em.radio", "Forced-photometry Stokes I flux density"),
    "flux_err_jy": ("Jy", "stat.error;phot.flux.density", "1-sigma error of flux_jy"),
    "class": (None, "meta.code.class", "transient, variable, stable, insufficient_data, faint"),
    "ra_deg": ("deg", "pos.eq.ra;meta.main", "Right ascension, ICRS"),
    "dec_deg": ("deg", "pos.eq.dec;meta.main", "Declination, ICRS"),
    "n": (None, "meta.number", "Usable measurements"),
    "mean_flux_jy": ("Jy", "phot.flux.density;stat.mean", "Mean flux density"),
    "wmean_flux_jy": ("Jy", "phot.flux.density;stat.mean", "Inverse-variance weighted mean"),
    "v": (None, "stat.variance", "V = std / mean (coefficient of variation)"),
    "eta": (None, "stat.fit.chi2", "Weighted reduced chi-square about the weighted mean"),
    "p_constant": (None, "stat.probability", "Chi-square probability of a constant source"),
    "q_value": (None, "stat.probability", "Benjamini-Hochberg adjusted p_constant"),
    "variable_by": (None, "meta.code", "Size test a variable passed: eta_v, two_epoch, both"),
    "vs": (None, "stat.value", "|Vs| of the reported pair (Mooley et al. 2016)"),
    "m": (None, "stat.value", "|m| of the reported pair (Mooley et al. 2016)"),
    "pair_mjd_a": ("d", "time.epoch", "Brighter epoch of the reported pair, MJD"),
    "pair_mjd_b": ("d", "time.epoch", "Fainter epoch of the reported pair, MJD"),
    "first_detection_mjd": ("d", "time.epoch", "First significant detection, MJD"),
    "first_detection_snr": (None, "stat.snr", "SNR of the first significant detection"),
}


def _table(frame: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> Table:
    """An astropy Table of the columns present, strings as str, with units and descriptions."""
    data: dict[str, Any] = {}
    for name in columns:
        if name not in frame:
            continue
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
            data[name] = col.to_numpy(dtype=np.int64 if col.dtype.kind in "iu" else np.float64)
        else:
            data[name] = np.array([str(v) for v in col], dtype=str)
    table = Table(data)
    for name in table.colnames:
        unit, _, description = COLUMN_META.get(name, (None, "", ""))
        if unit is not None:
            table[name].unit = unit
        table[name].description = description
    return table


def _votable(table: Table, name: str) -> votable.tree.VOTableFile:
    vot = votable.from_table(table, table_id=name)
    resource_table = vot.get_first_table()
    resource_table.name = name
    for fld in resource_table.fields:
        ucd = COLUMN_META.get(fld.name, (None, "", ""))[1]
        if ucd:
            fld.ucd = ucd
    return vot


def write_votable(frame: pd.DataFrame, columns: list[str], path: Path, name: str) -> Path:
    """Some columns of a frame as a VOTable file (TABLEDATA, readable as text)."""
    vot = _votable(_table(frame, columns), name)
    with atomic_file(path) as tmp:
        votable.writeto(vot, str(tmp))
    return path


def write_light_curve_csv(curve: pd.DataFrame, path: Path) -> Path:
    """One source's light curve as CSV (the LIGHT_CURVE_COLUMNS present, time order); numbers
    in shortest round-trip form, so the file reads back to the same doubles."""
    cols = [c for c in LIGHT_CURVE_COLUMNS if c in curve]
    with atomic_file(path) as tmp:
        curve.sort_values("mjd")[cols].to_csv(tmp, index=False)
    return path


def write_light_curve_votable(curve: pd.DataFrame, path: Path) -> Path:
    """One source's light curve as a VOTable."""
    cols = [c for c in LIGHT_CURVE_COLUMNS if c in curve]
    return write_votable(curve.sort_values("mjd"), cols, path, "light_curve")


def write_candidates_votable(cands: pd.DataFrame, fields: tuple[str, ...], path: Path) -> Path:
    """A run's candidates (best first) as a VOTable."""
    return write_votable(cands, [c for c in fields if c in cands], path, "candidates")
