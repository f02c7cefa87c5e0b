"""An unmatched significant component fitted narrower than the restoring beam (a noise spike
or clean artefact) is not a new source; one of the beam's size is."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dsa110d.science.catalog import Catalog
from dsa110d.science.imaging.finder import MIN_MINOR_BEAM_FRACTION, FinderParams, match_catalog

pytestmark = pytest.mark.unit

BMAJ_ARCSEC, BMIN_ARCSEC = 69.0, 23.0


def _components(minor_arcsec: list[float]) -> pd.DataFrame:
    n = len(minor_arcsec)
    return pd.DataFrame(
        {
            "ra_deg": 165.0 + 0.2 * np.arange(n), "dec_deg": np.full(n, 60.0),
            "peak_jy": np.full(n, 0.02), "snr": np.full(n, 15.0),
            "a_arcsec": np.full(n, BMAJ_ARCSEC), "b_arcsec": minor_arcsec,
            "near_edge": np.zeros(n, dtype=bool),
        }
    )  # fmt: skip


def test_a_component_narrower_than_the_beam_is_not_a_new_source() -> None:
    far = Catalog(("X",), np.array([10.0]), np.array([-30.0]), np.array([1.0]))
    narrow = 0.99 * MIN_MINOR_BEAM_FRACTION * BMIN_ARCSEC
    frame = _components([narrow, BMIN_ARCSEC, 1.2 * BMIN_ARCSEC])
    out = match_catalog(
        frame, far, BMAJ_ARCSEC / 3600, FinderParams(), beam_minor_deg=BMIN_ARCSEC / 3600
    )
    assert out["new_source"].tolist() == [False, True, True]
    # Without the beam's minor axis (the control) the narrow one passes as new.
    unchecked = match_catalog(frame, far, BMAJ_ARCSEC / 3600, FinderParams())
    assert unchecked["new_source"].all()
