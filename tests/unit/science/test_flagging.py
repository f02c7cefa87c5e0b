"""The flag stage: outliers by median/MAD, zeros and autocorrelations, written into the MS."""

from __future__ import annotations

import numpy as np
from casacore import tables

from dsa110d.science.flagging import FLAG_MAD_THRESHOLD, flag_ms, outlier_mask
from dsa110d.science.testms import SimBlock


def test_outlier_mask_flags_only_far_samples() -> None:
    rng = np.random.default_rng(0)
    series = rng.normal(10, 1, (24, 5)).astype(np.float32)
    series[3, 2] = 10 + 3 * FLAG_MAD_THRESHOLD
    mask = outlier_mask(series)
    assert mask[3, 2] and mask.sum() == 1


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
    with tables.table(str(path), ack=False) as ms:
        flags = ms.getcol("FLAG")
    assert flags[autos].all()
    assert flags[cross[0], 5, 0] and flags[cross[1], 7, 1]
    assert counts["zeros"] == 1 and counts["outliers"] >= 1
    assert flags[~autos].mean() < 0.01  # noise alone is left alone


def test_flagging_an_ms_twice_changes_nothing(sim_block: SimBlock) -> None:
    """A re-run block (or the next block sharing the chunk) sees the same flags."""
    path = sim_block.ms_paths[0]
    flag_ms(path)
    with tables.table(str(path), ack=False) as ms:
        first = ms.getcol("FLAG")
    again = flag_ms(path)
    with tables.table(str(path), ack=False) as ms:
        assert (ms.getcol("FLAG") == first).all()
    assert again["total"] == 0
