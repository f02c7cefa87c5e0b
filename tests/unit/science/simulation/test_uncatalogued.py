"""The simulator's uncatalogued sky: in the truth file, on when it says, drawn from its own
random stream, faint counts Euclidean."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dsa110d.science.simulation.simulate import SimulationSpec, simulate
from dsa110d.science.simulation.uncatalogued import (
    FAINT_FLUX_RANGE_JY,
    draw_uncatalogued,
)

pytestmark = pytest.mark.unit


def test_transients_are_in_the_truth_on_only_between_their_times(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    plain = simulate(tiny_spec(tmp_path / "plain", sets=3))
    spec = tiny_spec(tmp_path / "with", sets=3, transients=12, faint_per_deg2=0.2)
    result = simulate(spec)
    assert plain.truth_path is not None and result.truth_path is not None
    truth = json.loads(result.truth_path.read_text())
    before = json.loads(plain.truth_path.read_text())
    # The catalog's sky, its variability and fluxes are those of the same seed without them.
    assert truth["sources"] == before["sources"]
    hidden = truth["uncatalogued"]
    transients = [h for h in hidden if h["kind"] != "faint"]
    assert len(transients) == 12 and {h["kind"] for h in transients} <= {"appear", "vanish", "on"}
    assert any(h["kind"] == "faint" for h in hidden)
    set_mjd = _set_mid_mjd(truth)
    for h in transients:
        on = -math.inf if h["on_mjd"] is None else h["on_mjd"]
        off = math.inf if h["off_mjd"] is None else h["off_mjd"]
        expected = [h["flux_jy"] if on <= t < off else 0.0 for t in set_mjd]
        np.testing.assert_allclose(h["flux_per_set_jy"], expected)


def _set_mid_mjd(truth: dict[str, object]) -> list[float]:
    """Each set's middle integration (the simulator's flux epoch), MJD."""
    from datetime import datetime

    from astropy.time import Time

    from dsa110d.science import constants as k
    from dsa110d.science.simulation.layout import SCALES

    scale = SCALES[str(truth["scale"])]
    mid_s = (scale.integrations // 2 + 0.5) * scale.integration_time_s
    starts = [datetime.fromisoformat(s["start"]).replace(tzinfo=None) for s in truth["sets"]]  # type: ignore[attr-defined]
    return [Time(t, scale="utc").mjd + mid_s / k.SECONDS_PER_DAY for t in starts]


def test_faint_counts_follow_the_euclidean_slope() -> None:
    """N(>S) ~ S^-1.5: the count above 2x the lower limit is 2^-1.5 of the count above it
    (to Poisson error, truncated at the upper limit)."""
    hidden = draw_uncatalogued(
        np.random.default_rng(3), track_ra_deg=np.array([100.0, 110.0]),
        track_dec_deg=np.array([60.0, 60.0]), track_mjd=np.array([61000.0, 61000.05]),
        faint_per_deg2=0.2, n_transients=0,
    )  # fmt: skip
    flux = hidden.catalog.flux_jy
    lo, hi = FAINT_FLUX_RANGE_JY
    assert flux.min() >= lo and flux.max() <= hi and flux.size > 1000
    expected = ((2 * lo) ** -1.5 - hi**-1.5) / (lo**-1.5 - hi**-1.5)
    observed = float(np.mean(flux >= 2 * lo))
    assert abs(observed - expected) < 4 * math.sqrt(expected * (1 - expected) / flux.size)
