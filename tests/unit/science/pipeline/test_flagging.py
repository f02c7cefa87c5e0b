"""The flag stage: outliers by median/MAD, zeros and autocorrelations, written into the MS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from casacore import tables
from numpy.typing import NDArray

from dsa110d.science.pipeline.flagging import (
    FLAG_MAD_THRESHOLD,
    MAD_TO_SIGMA,
    flag_ms,
    outlier_mask,
)
from tests.helpers.testms import SimBlock


# --- The reference: the first implementation (np.sort along time on a dense cube) ----------
def _reference_nan_median(values: NDArray[np.float32], axis: int = 0) -> NDArray[np.float32]:
    ordered = np.sort(values, axis=axis)
    valid = np.sum(~np.isnan(values), axis=axis, keepdims=True)
    low = np.take_along_axis(ordered, np.maximum(valid - 1, 0) // 2, axis=axis)
    high = np.take_along_axis(ordered, valid // 2, axis=axis)
    high = np.where(valid % 2 == 1, low, high)
    return np.asarray(np.where(valid > 0, 0.5 * (low + high), np.nan), dtype=np.float32)


def _reference_outlier_mask(amplitude: NDArray[np.float32], axis: int = 0) -> NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):  # inf - inf
        median = _reference_nan_median(amplitude, axis)
        mad = _reference_nan_median(np.abs(amplitude - median), axis)
        return np.asarray(np.abs(amplitude - median) > FLAG_MAD_THRESHOLD * MAD_TO_SIGMA * mad)


def _reference_flags(path: Path) -> NDArray[np.bool_]:
    """The FLAG column the first implementation wrote (the whole MS as one slab)."""
    with tables.table(str(path), ack=False) as ms:
        times, ant1, ant2 = ms.getcol("TIME"), ms.getcol("ANTENNA1"), ms.getcol("ANTENNA2")
        data, old = ms.getcol("DATA"), ms.getcol("FLAG")
    _, t_index = np.unique(times, return_inverse=True)
    _, b_index = np.unique(ant1.astype(np.int64) * 100_000 + ant2, return_inverse=True)
    autos = ant1 == ant2
    zeros = data == 0
    amplitude = np.abs(data).astype(np.float32)
    amplitude[old | zeros | autos[:, None, None]] = np.nan
    cube = np.full((t_index.max() + 1, b_index.max() + 1, *data.shape[1:]), np.nan, np.float32)
    cube[t_index, b_index] = amplitude
    outliers = _reference_outlier_mask(cube)[t_index, b_index]
    return np.asarray(old | ((outliers | zeros | autos[:, None, None]) & ~old))


def _spoil(path: Path) -> None:
    """Zeros, outliers, NaN, prior flags, an all-flagged and a constant series, an infinity."""
    rng = np.random.default_rng(5)
    with tables.table(str(path), readonly=False, ack=False) as ms:
        data, flags = ms.getcol("DATA"), ms.getcol("FLAG")
        n_rows, n_chan, n_pol = data.shape
        n_base = int(np.count_nonzero(ms.getcol("TIME") == ms.getcell("TIME", 0)))
        for value in (0, np.nan, np.inf):
            hit = rng.integers(0, [n_rows, n_chan, n_pol], (40, 3)).T
            data[hit[0], hit[1], hit[2]] = value
        hit = rng.integers(0, [n_rows, n_chan, n_pol], (400, 3)).T
        data[hit[0], hit[1], hit[2]] *= rng.choice([3.0, 30.0, 1e4], 400)
        hit = rng.integers(0, [n_rows, n_chan, n_pol], (300, 3)).T
        flags[hit[0], hit[1], hit[2]] = True
        flags[7::n_base, 3] = True  # a baseline's channel flagged at every time
        data[9::n_base, 4] = 3 + 4j  # ties: a constant series
        data[11::n_base, 5, 0][:11] = 0  # mostly zeros: few valid samples left
        ms.putcol("DATA", data)
        ms.putcol("FLAG", flags)


def _flags(path: Path) -> NDArray[np.bool_]:
    with tables.table(str(path), ack=False) as ms:
        return np.asarray(ms.getcol("FLAG"))


# --- Tests -------------------------------------------------------------------------------------
def test_outlier_mask_flags_only_far_samples() -> None:
    rng = np.random.default_rng(0)
    series = rng.normal(10, 1, (24, 5)).astype(np.float32)
    series[3, 2] = 10 + 3 * FLAG_MAD_THRESHOLD
    mask = outlier_mask(series)
    assert mask[3, 2] and mask.sum() == 1


@pytest.mark.parametrize("n_time", [1, 2, 3, 7, 16, 24, 25])
def test_outlier_mask_is_the_sort_based_reference_bit_for_bit(n_time: int) -> None:
    """NaN (absent), ties, infinities and all-NaN series included, along either axis."""
    rng = np.random.default_rng(n_time)
    amplitude = rng.rayleigh(1.0, (n_time, 40_000)).astype(np.float32)
    amplitude[rng.random(amplitude.shape) < 0.2] = np.nan
    amplitude[rng.random(amplitude.shape) < 0.01] *= 50
    amplitude[rng.random(amplitude.shape) < 0.001] = np.inf
    amplitude[:, :100] = np.round(amplitude[:, :100])  # ties
    amplitude[:, 100:200] = np.nan
    expected = _reference_outlier_mask(amplitude)
    assert expected.any() or n_time < 3  # one or two samples are never outliers
    assert np.array_equal(outlier_mask(amplitude), expected)
    assert np.array_equal(outlier_mask(amplitude.T.copy(), axis=1), expected.T)


@pytest.mark.parametrize("slab_visibilities", [10**9, 24 * 64 * 2 * 37, 50_000])
def test_flags_are_the_reference_flags_whatever_the_slab(
    sim_block: SimBlock, slab_visibilities: int
) -> None:
    """A full grid, read in slabs of whole baselines (one slab, uneven ones, many)."""
    path = sim_block.ms_paths[0]
    _spoil(path)
    expected = _reference_flags(path)
    counts = flag_ms(path, slab_visibilities=slab_visibilities)
    assert np.array_equal(_flags(path), expected)
    assert counts["outliers"] > 0 and counts["zeros"] > 0


@pytest.mark.parametrize("slab_visibilities", [10**9, 40_000])
def test_an_irregular_ms_gets_the_reference_flags(
    sim_block: SimBlock, tmp_path: Path, slab_visibilities: int
) -> None:
    """Rows missing and out of order: flagged through a dense cube, in slabs of channels."""
    source = sim_block.ms_paths[0]
    _spoil(source)
    rng = np.random.default_rng(2)
    with tables.table(str(source), ack=False) as ms:
        rows = rng.permutation(ms.nrows())[: ms.nrows() - 500]
        path = tmp_path / "irregular.ms"
        ms.selectrows(rows).copy(str(path), deep=True).close()
    expected = _reference_flags(path)
    counts = flag_ms(path, slab_visibilities=slab_visibilities)
    assert np.array_equal(_flags(path), expected)
    assert counts["outliers"] > 0


def test_zeros_autos_and_outliers_are_flagged_in_the_ms(sim_block: SimBlock) -> None:
    path = sim_block.ms_paths[0]
    with tables.table(str(path), readonly=False, ack=False) as ms:
        data = ms.getcol("DATA")
        cross = np.flatnonzero(ms.getcol("ANTENNA1") != ms.getcol("ANTENNA2"))
        data[cross[0], 5, 0] = 0
        data[cross[1], 7, 1] += 1e4
        ms.putcol("DATA", data)
        autos = ms.getcol("ANTENNA1") == ms.getcol("ANTENNA2")
    counts = flag_ms(path)
    flags = _flags(path)
    assert flags[autos].all()
    assert flags[cross[0], 5, 0] and flags[cross[1], 7, 1]
    assert counts["zeros"] == 1 and counts["outliers"] >= 1
    assert flags[~autos].mean() < 0.01  # noise alone is left alone


def test_flagging_an_ms_twice_changes_nothing(sim_block: SimBlock) -> None:
    """A re-run block (or the next block sharing the chunk) sees the same flags."""
    path = sim_block.ms_paths[0]
    flag_ms(path)
    first = _flags(path)
    again = flag_ms(path)
    assert (_flags(path) == first).all()
    assert again["total"] == 0
