"""The simulator's extended emission: a Gaussian's visibility (checked against a direct sum
over a finely sampled Gaussian image), present on the short baselines only, in the truth
file, drawn from its own stream, on with the uncatalogued sky and selectable."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from dsa110d.science import constants as k
from dsa110d.science.simulation.diffuse import TAPER_FLOOR, taper
from dsa110d.science.simulation.simulate import SimulationSpec, simulate

pytestmark = pytest.mark.unit

FWHM_ARCMIN = 6.0
GRID_STEP_FWHM = 0.04
"""The direct sum samples the image every 0.04 FWHM (its aliases lie far beyond the uv used)."""
TAPER_ATOL = 1e-4
SEEN_FRACTION = 0.1
"""Baselines on which the largest component keeps more than this of its flux must see it."""


def test_the_taper_is_the_fourier_transform_of_the_gaussian() -> None:
    fwhm = math.radians(FWHM_ARCMIN / 60.0)
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    step = GRID_STEP_FWHM * fwhm
    axis = np.arange(-5 * sigma, 5 * sigma + step, step)
    l_, m_ = np.meshgrid(axis, axis)
    image = np.exp(-(l_**2 + m_**2) / (2 * sigma**2))
    image /= image.sum()
    uv_lambda = np.array([0.0, 50.0, 150.0, 300.0, 600.0])
    direct = [float(np.sum(image * np.cos(2 * np.pi * u * l_)).real) for u in uv_lambda]
    freq = np.array([[k.SPEED_OF_LIGHT_M_S]])  # 1 m = 1 wavelength
    uvw = np.stack([uv_lambda, np.zeros_like(uv_lambda), np.zeros_like(uv_lambda)], axis=1)
    np.testing.assert_allclose(taper(uvw, freq, fwhm)[:, 0, 0], direct, atol=TAPER_ATOL)


def _vis(result_files: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    path = sorted(p for p in result_files if p.name.endswith("_sb00.hdf5"))[0]
    with h5py.File(path) as f:
        return f["Data/visdata"][:], f["Header/uvw_array"][:], f["Header/freq_array"][:]


def test_extended_emission_is_on_the_short_baselines_only_and_in_the_truth(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    # Transients switch the extended emission on by default; the off run says so explicitly.
    # Small scale: the tiny array's shortest spacing (~450 lambda) sees none of it.
    base = {"transients": 3, "seed": 4, "scale": "small", "n_subbands": 2, "sets": 1}
    on = simulate(tiny_spec(tmp_path / "on", **base))
    off = simulate(tiny_spec(tmp_path / "off", diffuse=False, **base))
    assert on.truth_path is not None and off.truth_path is not None
    truth_on = json.loads(on.truth_path.read_text())
    truth_off = json.loads(off.truth_path.read_text())
    assert truth_off["diffuse"] == []
    components = truth_on["diffuse"]
    assert components and all(c["fwhm_arcmin"] > 0 and c["flux_jy"] > 0 for c in components)
    # The same seed's sky otherwise: catalog, uncatalogued sources and noise.
    assert truth_on["sources"] == truth_off["sources"]
    assert truth_on["uncatalogued"] == truth_off["uncatalogued"]
    vis_on, uvw, freq = _vis(on.files)
    vis_off, _, _ = _vis(off.files)
    diff = np.abs(vis_on - vis_off).max(axis=(1, 2, 3))
    smallest = math.radians(min(c["fwhm_arcmin"] for c in components) / 60.0)
    longest = float(freq.max()) / k.SPEED_OF_LIGHT_M_S
    uv = np.hypot(uvw[:, 0], uvw[:, 1]) * longest
    beyond = uv > math.sqrt(-4 * math.log(2) * math.log(TAPER_FLOOR)) / (math.pi * smallest)
    assert beyond.any() and (diff[beyond] == 0).all()
    largest = math.radians(max(c["fwhm_arcmin"] for c in components) / 60.0)
    kept = np.exp(-((math.pi * largest * uv) ** 2) / (4 * math.log(2)))  # its visibility / flux
    shortest = (uv > 0) & (kept > SEEN_FRACTION)
    assert shortest.any() and (diff[shortest] > 0).all()


def test_no_uncatalogued_sky_no_extended_emission_unless_asked(
    tiny_spec: Callable[..., SimulationSpec], tmp_path: Path
) -> None:
    plain = simulate(tiny_spec(tmp_path / "plain"))
    asked = simulate(tiny_spec(tmp_path / "asked", diffuse=True))
    assert plain.truth_path is not None and asked.truth_path is not None
    assert json.loads(plain.truth_path.read_text())["diffuse"] == []
    assert json.loads(asked.truth_path.read_text())["diffuse"]
