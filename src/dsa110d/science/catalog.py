"""Point-source catalogs: read and write the CSV form, and draw random skies for the simulator.

A catalog CSV has a header row with at least the columns ``id, ra_deg, dec_deg, flux_jy``
(ICRS J2000 degrees, flux density in Jy at the band centre); other columns are kept as strings.
Bad input raises ``InputFileError`` with one line naming the file, line and column.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dsa110d.errors import InputFileError

REQUIRED_COLUMNS = ("id", "ra_deg", "dec_deg", "flux_jy")
"""Columns every catalog CSV must carry, in this order when written."""
DEFAULT_DEC_HALFWIDTH_DEG = 3.0
"""Random catalogs span the pointing dec +/- this: past the beam's first null (~3 deg)."""
DEFAULT_FLUX_RANGE_JY = (0.02, 5.0)
"""Random catalogs draw fluxes between these, Jy."""
EUCLIDEAN_COUNT_SLOPE = -1.5
"""N(>S) proportional to S**slope: the Euclidean source-count slope."""


@dataclass(frozen=True)
class Catalog:
    """A point-source catalog as parallel arrays (one row per source)."""

    ids: tuple[str, ...]
    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    flux_jy: NDArray[np.float64]
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Other CSV columns, by name, as strings."""

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: NDArray[np.intp] | NDArray[np.bool_]) -> Catalog:
        """The rows at ``index`` (integer positions or a boolean mask)."""
        rows = np.arange(len(self))[index]
        return Catalog(
            ids=tuple(self.ids[i] for i in rows),
            ra_deg=self.ra_deg[rows],
            dec_deg=self.dec_deg[rows],
            flux_jy=self.flux_jy[rows],
            extra={k: tuple(v[i] for i in rows) for k, v in self.extra.items()},
        )


def _number(path: Path, line: int, column: str, text: str | None) -> float:
    try:
        value = float(text if text is not None else "")
    except ValueError:
        raise InputFileError(
            f"{path}: line {line}, column {column}: {text!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise InputFileError(f"{path}: line {line}, column {column}: {text!r} is not finite")
    return value


def _check_range(path: Path, line: int, column: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise InputFileError(
            f"{path}: line {line}, column {column}: {value} is outside [{lo}, {hi}]"
        )


def read_catalog(path: str | Path) -> Catalog:
    """Read a catalog CSV; raises ``InputFileError`` naming file, line and column on bad input."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read catalog: {exc}") from None
    except csv.Error as exc:
        raise InputFileError(f"{path}: not a CSV file: {exc}") from None
    if not rows:
        raise InputFileError(f"{path}: line 1: empty catalog (no header row)")
    header = [name.strip() for name in rows[0]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputFileError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
    return _parse_rows(path, header, rows[1:])


def _parse_rows(path: Path, header: list[str], rows: list[list[str]]) -> Catalog:
    position = {name: i for i, name in enumerate(header)}
    ids: list[str] = []
    values: dict[str, list[float]] = {"ra_deg": [], "dec_deg": [], "flux_jy": []}
    extra_names = [n for n in header if n not in REQUIRED_COLUMNS]
    extra: dict[str, list[str]] = {n: [] for n in extra_names}
    seen: dict[str, int] = {}
    for offset, row in enumerate(rows):
        line = offset + 2
        if not any(cell.strip() for cell in row):
            continue  # a blank line (e.g. a trailing newline) is not a source
        if len(row) != len(header):
            raise InputFileError(
                f"{path}: line {line}: {len(row)} fields where the header has {len(header)}"
            )
        source_id = row[position["id"]].strip()
        if not source_id:
            raise InputFileError(f"{path}: line {line}, column id: empty source id")
        if source_id in seen:
            raise InputFileError(
                f"{path}: line {line}, column id: {source_id!r} repeats line {seen[source_id]}"
            )
        seen[source_id] = line
        ra = _number(path, line, "ra_deg", row[position["ra_deg"]])
        dec = _number(path, line, "dec_deg", row[position["dec_deg"]])
        flux = _number(path, line, "flux_jy", row[position["flux_jy"]])
        _check_range(path, line, "ra_deg", ra, 0.0, 360.0)
        _check_range(path, line, "dec_deg", dec, -90.0, 90.0)
        _check_range(path, line, "flux_jy", flux, 0.0, math.inf)
        ids.append(source_id)
        values["ra_deg"].append(ra % 360.0)
        values["dec_deg"].append(dec)
        values["flux_jy"].append(flux)
        for name in extra_names:
            extra[name].append(row[position[name]])
    if not ids:
        raise InputFileError(f"{path}: line 2: the catalog has no sources")
    return Catalog(
        ids=tuple(ids),
        ra_deg=np.array(values["ra_deg"], dtype=np.float64),
        dec_deg=np.array(values["dec_deg"], dtype=np.float64),
        flux_jy=np.array(values["flux_jy"], dtype=np.float64),
        extra={k: tuple(v) for k, v in extra.items()},
    )


def write_catalog(path: str | Path, catalog: Catalog) -> None:
    """Write ``catalog`` as CSV (required columns first, then the extra ones)."""
    extra_names = list(catalog.extra)
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*REQUIRED_COLUMNS, *extra_names])
        writer.writerows(_rows(catalog, extra_names))


def _rows(catalog: Catalog, extra_names: Iterable[str]) -> Iterable[list[str]]:
    names = list(extra_names)
    for i, source_id in enumerate(catalog.ids):
        yield [
            source_id,
            repr(float(catalog.ra_deg[i])),
            repr(float(catalog.dec_deg[i])),
            repr(float(catalog.flux_jy[i])),
            *(catalog.extra[n][i] for n in names),
        ]


def random_catalog(
    dec_deg: float,
    n_sources: int = 300,
    *,
    seed: int = 0,
    dec_halfwidth_deg: float = DEFAULT_DEC_HALFWIDTH_DEG,
    ra_range_deg: tuple[float, float] = (0.0, 360.0),
    flux_range_jy: tuple[float, float] = DEFAULT_FLUX_RANGE_JY,
) -> Catalog:
    """A random sky of ``n_sources`` point sources in a strip around declination ``dec_deg``.

    Positions are uniform on the sphere within ``dec_deg +/- dec_halfwidth_deg`` (clipped to
    the poles) and ``ra_range_deg`` (which may wrap through 0, e.g. (350, 10)); fluxes follow
    Euclidean counts between ``flux_range_jy``. Ids are ``SIM0000``, ``SIM0001``... in RA
    order. Deterministic under ``seed``.
    """
    rng = np.random.default_rng(seed)
    lo = math.radians(max(-90.0, dec_deg - dec_halfwidth_deg))
    hi = math.radians(min(90.0, dec_deg + dec_halfwidth_deg))
    dec = np.degrees(np.arcsin(rng.uniform(math.sin(lo), math.sin(hi), n_sources)))
    ra_span = (ra_range_deg[1] - ra_range_deg[0]) % 360.0 or 360.0
    ra = (ra_range_deg[0] + rng.uniform(0.0, ra_span, n_sources)) % 360.0
    s_min, s_max = flux_range_jy
    # Inverse-CDF draw from N(>S) ~ S**slope, truncated to [s_min, s_max].
    a, b = s_min**EUCLIDEAN_COUNT_SLOPE, s_max**EUCLIDEAN_COUNT_SLOPE
    flux = (a + rng.uniform(0.0, 1.0, n_sources) * (b - a)) ** (1.0 / EUCLIDEAN_COUNT_SLOPE)
    order = np.argsort(ra, kind="stable")
    width = max(4, len(str(n_sources - 1)))
    return Catalog(
        ids=tuple(f"SIM{i:0{width}d}" for i in range(n_sources)),
        ra_deg=ra[order],
        dec_deg=dec[order],
        flux_jy=flux[order],
    )


CALIBRATOR_COLUMN = "calibrator"
"""Optional column marking calibrators: ``1``/``true``/``yes`` for a calibrator, else empty."""
FLUX_MODEL_COLUMN = "flux_model"
"""Optional column naming a row's spectrum (:mod:`dsa110d.science.fluxmodels`): empty or
``flat`` for the catalog flux at every frequency, ``PB17:3C286`` for a Perley-Butler 2017
standard. ``flux_jy`` stays the flux at the band centre."""
_TRUE = frozenset({"1", "true", "yes", "y"})


def calibrator_rows(catalog: Catalog) -> NDArray[np.intp]:
    """Rows of ``catalog`` marked as calibrators (none when it has no calibrator column)."""
    marks = catalog.extra.get(CALIBRATOR_COLUMN)
    if marks is None:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero([m.strip().lower() in _TRUE for m in marks]).astype(np.intp)


def flux_models(catalog: Catalog) -> tuple[str, ...]:
    """Each row's flux model name (``""``: flat)."""
    return catalog.extra.get(FLUX_MODEL_COLUMN, ("",) * len(catalog))


def spectra(
    catalog: Catalog, freq_hz: NDArray[np.float64], reference_hz: float
) -> NDArray[np.float64]:
    """Each source's flux at ``freq_hz`` over its catalog flux, shape (Nsources, *freq.shape):
    1 for flat spectra; the model's shape normalised at ``reference_hz`` otherwise."""
    from dsa110d.science.fluxmodels import spectral_shape

    out = np.ones((len(catalog), *np.shape(freq_hz)), dtype=np.float64)
    for row, model in enumerate(flux_models(catalog)):
        if model.strip():
            out[row] = spectral_shape(model, freq_hz, reference_hz)
    return out
