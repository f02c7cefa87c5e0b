"""The one reader of photometry tables: the processor's Parquet as written -> the typed frame.

The processor (``science/photometry.py``, :data:`~dsa110d.science.photometry.SCHEMA`) writes one
file per block with ``flags`` as a comma-separated list of flag *names* (empty when clean). The
variability metrics count a row only when its flag *code* is 0. Every entry point that reads
photometry (the analyzer's runs, :func:`dsa110d.science.variability.recompute` called directly,
``dsa110ctl lightcurve``, the demo's report) goes through this module, so the same rows count
everywhere: a direct API call on the processor's files gives the service's numbers.

Flag names map to codes by :func:`flags_code`: a row is unusable (code 1) when it carries a flag
of :data:`UNUSABLE_FLAGS` or any name this module does not know (a new flag is suspect until it
is classified here); :data:`INFORMATIONAL_FLAGS` keep the row (code 0). Integer flags pass
unchanged. The names themselves stay in ``flag_names`` for whoever wants to see them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from dsa110d.errors import VariabilityInputError

REQUIRED_COLUMNS = ("source_id", "block_id", "mjd", "flux_jy", "flux_err_jy", "flags", "version")
"""Columns the metrics need (the processor writes more: ra_deg, dec_deg, n_vis, beam_gain,
transit_mjd, pointing_dec_deg, beam_offset_deg, beam_model; older files lack the last four)."""

UNUSABLE_FLAGS = frozenset({"no_data", "partial_transit", "transit_elsewhere", "uncalibrated"})
"""Photometry flags (science/photometry.py) that make a row unusable: no visibilities, a
block far from the source's transit (its best beam gain below a fraction of the transit gain:
a block nearer the transit measures it better), a transit another (overlapping) block owns
(``stage.TRANSIT_OWNERSHIP``: one measurement per source per transit), or a block with chunks
that had no valid calibration (calibration enabled: raw visibilities are not janskys)."""
INFORMATIONAL_FLAGS = frozenset({"missing_chunks", "blended", "position_refined"})
"""Photometry flags that describe the block or the source's surroundings, not a fault of the
measurement: the row is kept (``missing_chunks`` is put on *every* row of a block that lacked a
chunk, while the sources it measured are measured properly; a blend with a neighbour too close
to separate is the same blend every day, so its variability is still real; a source measured
at the position its data gave rather than its catalog's is measured better)."""

FLOAT_COLUMNS = (
    "ra_deg", "dec_deg", "mjd", "transit_mjd", "flux_jy", "flux_err_jy", "beam_gain",
    "pointing_dec_deg", "beam_offset_deg", "position_offset_arcsec",
)  # fmt: skip
INT_COLUMNS = ("version", "n_vis")


def flags_code(flags: pd.Series) -> pd.Series:
    """Flags as the metrics want them: 0 when the row is usable (see the module docstring)."""
    if pd.api.types.is_numeric_dtype(flags) and not pd.api.types.is_bool_dtype(flags):
        return flags
    text = flags.astype("string").fillna("")
    codes = np.zeros(len(text), dtype=np.int64)
    for value in pd.unique(text):  # a handful of distinct flag lists per file
        names = {n.strip() for n in str(value).split(",")} - {""}
        if names - INFORMATIONAL_FLAGS:
            codes[(text == value).to_numpy()] = 1
    return pd.Series(codes, index=flags.index)


def usable_mask(rows: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """The rows the metrics count (whatever their version): flag code 0, the flux and its
    positive error finite."""
    flux = rows["flux_jy"].to_numpy(dtype=np.float64)
    err = rows["flux_err_jy"].to_numpy(dtype=np.float64)
    flags = flags_code(rows["flags"]).to_numpy()
    with np.errstate(invalid="ignore"):
        good: npt.NDArray[np.bool_] = (
            (flags == 0) & np.isfinite(flux) & np.isfinite(err) & (err > 0)
        )
    return good


def check_columns(rows: pd.DataFrame, where: str) -> None:
    """One VariabilityInputError line naming the input when a needed column is missing."""
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise VariabilityInputError(f"{where}: missing column(s) {', '.join(missing)}")


def typed(rows: pd.DataFrame, *, where: str = "photometry") -> pd.DataFrame:
    """The typed frame: numbers as float64/int64, ``flags`` as codes (int64), the original
    names in ``flag_names``; ids keep their type (the processor writes strings)."""
    check_columns(rows, where)
    out = rows.copy()
    if not pd.api.types.is_numeric_dtype(out["flags"]) or pd.api.types.is_bool_dtype(out["flags"]):
        out["flag_names"] = out["flags"].astype("string").fillna("")
        out["flags"] = flags_code(out["flags"]).astype(np.int64)
    for names, dtype, what in (
        (FLOAT_COLUMNS, np.float64, "numeric"),
        (INT_COLUMNS, np.int64, "an integer"),
    ):
        for name in names:
            if name in out:
                try:
                    out[name] = out[name].astype(dtype)
                except (TypeError, ValueError):
                    raise VariabilityInputError(f"{where}: column {name} is not {what}") from None
    return out


def read_table(path: Path, source_id: str | None = None) -> pd.DataFrame:
    """One photometry file as the typed frame (only one source's rows when ``source_id`` is
    given, read with a Parquet filter); a bad file is one VariabilityInputError line."""
    try:
        if source_id is None:
            rows = pd.read_parquet(path)
        else:
            rows = pd.read_parquet(path, filters=[("source_id", "==", source_id)])
    except (OSError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VariabilityInputError(f"{path}: unreadable photometry: {first}") from None
    return typed(rows, where=str(path))


def read_tables(paths: Iterable[Path], source_id: str | None = None) -> pd.DataFrame:
    """Several photometry files (e.g. a results directory's ``photometry/*.parquet``) as one
    typed frame, in the order given (one source's rows when ``source_id`` is given)."""
    frames = [read_table(Path(p), source_id) for p in paths]
    if not frames:
        empty = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in REQUIRED_COLUMNS})
        return typed(empty.astype({"flags": np.int64, "version": np.int64}), where="no files")
    return pd.concat(frames, ignore_index=True)


def light_curve(results_dir: Path, source_id: str) -> pd.DataFrame:
    """One source's measurements from every photometry file: the latest version of each block,
    in time order, with ``usable`` saying whether the metrics count the row."""
    rows = read_tables(photometry_files(results_dir), source_id)
    if not len(rows):
        return rows.assign(usable=pd.Series(dtype=bool))
    latest = rows.groupby("block_id")["version"].transform("max")
    rows = rows[rows["version"] == latest].copy()
    rows["usable"] = usable_mask(rows)
    return rows.sort_values("mjd", kind="stable").reset_index(drop=True)


def photometry_files(results_dir: Path) -> list[Path]:
    """The complete photometry files of a results directory (no temporaries), sorted by name."""
    directory = results_dir / "photometry"
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.glob("*.parquet") if p.is_file() and not p.name.startswith(".")
    )
