"""The block loop: bounded memory, WEIGHT_SPECTRUM when needed, pipelined == in-process."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from casacore import tables

from dsa110d.science.conversion.convert import convert_set
from tests.helpers.reference import (
    DATA_RTOL,
    UVW_TOL_M,
    pyuvdata_convert,
)


def col(ms: Path, name: str, sub: str | None = None) -> np.ndarray:
    with tables.table(f"{ms}::{sub}" if sub else str(ms), ack=False) as t:
        return np.asarray(t.getcol(name))


def assert_data_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    scale = np.maximum(np.abs(theirs), np.abs(theirs).max() * 1e-6)
    assert np.max(np.abs(ours - theirs) / scale) <= DATA_RTOL


def _peak_traced_bytes(files: list[Path], out: Path) -> int:
    tracemalloc.start()
    try:
        convert_set(files, out, block_rows=256, isolate=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _longer_set(files: list[Path], dest: Path, repeats: int) -> list[Path]:
    """The same set with its integrations repeated (later times): more rows, same shape."""
    dest.mkdir()
    out = []
    for path in files:
        new = dest / path.name
        with h5py.File(path, "r") as src, h5py.File(new, "w") as dst:
            h = src["Header"]
            ntimes = len(np.unique(h["time_array"][()]))
            span = ntimes * float(h["integration_time"][0]) / 86400.0
            for key in h:
                if isinstance(h[key], h5py.Group):
                    src.copy(h[key], dst, name=f"Header/{key}")
            for key in h:
                if isinstance(h[key], h5py.Group):
                    continue
                v = h[key][()]
                if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == h["Nblts"][()]:
                    if key == "time_array":
                        v = np.concatenate([v + i * span for i in range(repeats)])
                    else:
                        v = np.concatenate([v] * repeats)
                dst[f"Header/{key}"] = v
            dst["Header/Nblts"][()] = int(h["Nblts"][()]) * repeats
            dst["Header/Ntimes"][()] = ntimes * repeats
            dst["Header"].pop("lst_array", None)  # recomputed for the new times
            for key in ("visdata", "flags", "nsamples"):
                dst[f"Data/{key}"] = np.concatenate([src[f"Data/{key}"][()]] * repeats)
        out.append(new)
    return out


@pytest.mark.timeout(120)
def test_memory_does_not_grow_with_the_number_of_integrations(
    small_set: list[Path], tmp_path: Path
) -> None:
    longer = _longer_set(small_set, tmp_path / "longer", repeats=4)
    short_peak = _peak_traced_bytes(small_set, tmp_path / "short.ms")
    long_peak = _peak_traced_bytes(longer, tmp_path / "long.ms")
    assert col(tmp_path / "long.ms", "TIME").size == 4 * col(tmp_path / "short.ms", "TIME").size
    # Holding the visibilities whole would add at least the extra rows' DATA, FLAG and
    # nsamples (13 B each); streaming adds only per-row header metadata.
    rows, nchan = (
        col(tmp_path / "short.ms", "TIME").size,
        col(tmp_path / "short.ms", "DATA").shape[1],
    )
    extra_visibility_bytes = 3 * rows * nchan * 2 * 13
    assert long_peak - short_peak < 0.25 * extra_visibility_bytes, (short_peak, long_peak)


@pytest.mark.timeout(120)
def test_weight_spectrum_appears_when_nsamples_vary_and_matches_pyuvdata(
    small_set: list[Path], tmp_path: Path
) -> None:
    uniform = convert_set(small_set, tmp_path / "uniform.ms")
    with tables.table(str(uniform.ms), ack=False) as t:
        assert "WEIGHT_SPECTRUM" not in t.colnames()  # WEIGHT says it all
    with h5py.File(small_set[2], "r+") as f:
        ns = f["Data/nsamples"][()]
        ns[-40:, :, :3] = 0.5  # a late block: the rows before it are backfilled
        f["Data/nsamples"][...] = ns
    ours, theirs = tmp_path / "ours.ms", tmp_path / "theirs.ms"
    result = convert_set(small_set, ours, block_rows=256)
    pyuvdata_convert(small_set, theirs, result.phase_ra_rad, result.phase_dec_rad)
    for name in ("WEIGHT_SPECTRUM", "WEIGHT", "SIGMA", "FLAG", "ANTENNA1", "ANTENNA2"):
        np.testing.assert_array_equal(col(ours, name), col(theirs, name))
    assert_data_close(col(ours, "DATA"), col(theirs, "DATA"))  # 8 pipelined blocks
    assert np.max(np.abs(col(ours, "UVW") - col(theirs, "UVW"))) <= UVW_TOL_M


def test_pipelined_and_in_process_writes_are_identical(
    small_set: list[Path], tmp_path: Path
) -> None:
    piped = convert_set(small_set, tmp_path / "piped.ms", block_rows=256)
    plain = convert_set(small_set, tmp_path / "plain.ms", block_rows=256, isolate=False)
    assert piped.n_rows > 3 * 256  # more blocks than the pipeline's slots
    for name in ("DATA", "FLAG", "UVW", "WEIGHT", "SIGMA", "FLAG_ROW", "TIME"):
        np.testing.assert_array_equal(col(piped.ms, name), col(plain.ms, name))


@pytest.mark.timeout(120)
def test_blocks_after_one_with_varying_nsamples_keep_their_own_weight_spectrum(
    small_set: list[Path], tmp_path: Path
) -> None:
    # nsamples vary in the first block only, in a subband after the first: the rows of the
    # subbands before it are backfilled, and every later block (uniform again) still writes
    # its own WEIGHT_SPECTRUM rather than what a reused block buffer held before.
    with h5py.File(small_set[len(small_set) // 2], "r+") as f:
        ns = f["Data/nsamples"][()]
        ns[:40, :, 5:9] = 0.25
        f["Data/nsamples"][...] = ns
    ours, theirs = tmp_path / "ours.ms", tmp_path / "theirs.ms"
    result = convert_set(small_set, ours, block_rows=256)
    plain = convert_set(small_set, tmp_path / "plain.ms", block_rows=256, isolate=False)
    assert result.n_rows > 3 * 256
    pyuvdata_convert(small_set, theirs, result.phase_ra_rad, result.phase_dec_rad)
    for name in ("WEIGHT_SPECTRUM", "WEIGHT", "SIGMA"):
        np.testing.assert_array_equal(col(ours, name), col(theirs, name))
        np.testing.assert_array_equal(col(plain.ms, name), col(theirs, name))
