"""Session-built science fixtures, copied by the tests that change files: simulated subband
sets, and a block of synthetic Measurement Sets with known sources."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dsa110d.config import Config, PathsConfig
from dsa110d.science.astrometry import use_offline_iers
from dsa110d.science.simulation.simulate import SimulationResult, SimulationSpec, simulate
from tests.helpers.testms import SimBlock, build_sim_block, copy_sim_block

TINY_START = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
"""Start of the session's tiny simulation (inside the bundled IERS tables' range)."""
TINY_SETS = 2
TINY_SUBBANDS = 4


@pytest.fixture(scope="session", autouse=True)
def _offline_iers() -> None:
    use_offline_iers()


def _tiny_spec(out: Path, **overrides: object) -> SimulationSpec:
    fields: dict[str, object] = {
        "out": out,
        "start": TINY_START,
        "sets": TINY_SETS,
        "scale": "tiny",
        "n_subbands": TINY_SUBBANDS,
        "seed": 1,
        "variable_fraction": 0.3,
    }
    fields.update(overrides)
    return SimulationSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_spec() -> Callable[..., SimulationSpec]:
    """``tiny_spec(out, **overrides)``: the session's tiny simulation, with overrides."""
    return _tiny_spec


@pytest.fixture(scope="session")
def tiny_start() -> datetime:
    return TINY_START


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """Two tiny sets of four subbands (read-only: copy a file before changing it)."""
    return simulate(_tiny_spec(tmp_path_factory.mktemp("tiny")))


# --- Whole sets (all 16 subbands) for the converter's tests --------------------------------
SET_START = datetime(2026, 3, 20, 7, 0, 0, tzinfo=UTC)
"""Start of the converter's sets (inside the bundled IERS tables' range)."""


def _whole_set(out: Path, scale: str) -> list[Path]:
    spec = _tiny_spec(out, scale=scale, sets=1, n_subbands=16, start=SET_START, seed=7)
    return sorted(simulate(spec).files)


def _copy_files(files: list[Path], dest: Path) -> list[Path]:
    dest.mkdir(exist_ok=True)
    return [Path(shutil.copy2(p, dest / p.name)) for p in files]


@pytest.fixture(scope="session")
def tiny_set_master(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One tiny set of all 16 subbands (read-only)."""
    return _whole_set(tmp_path_factory.mktemp("tiny-set"), "tiny")


@pytest.fixture(scope="session")
def small_set_master(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One small set of all 16 subbands (read-only)."""
    return _whole_set(tmp_path_factory.mktemp("small-set"), "small")


@pytest.fixture
def tiny_set(tiny_set_master: list[Path], tmp_path: Path) -> list[Path]:
    """A private copy of the tiny set's files (tests may alter them)."""
    return _copy_files(tiny_set_master, tmp_path / "incoming")


@pytest.fixture
def small_set(small_set_master: list[Path], tmp_path: Path) -> list[Path]:
    """A private copy of the small set's files."""
    return _copy_files(small_set_master, tmp_path / "incoming")


# --- A block of synthetic Measurement Sets for the processing stages' tests ------------------
@pytest.fixture(scope="session")
def sim_block_master(tmp_path_factory: pytest.TempPathFactory) -> SimBlock:
    return build_sim_block(tmp_path_factory.mktemp("simblock"))


@pytest.fixture
def sim_block(sim_block_master: SimBlock, tmp_path: Path) -> SimBlock:
    """A private copy (stages write flags into the MSs)."""
    return copy_sim_block(sim_block_master, tmp_path / "ms")


def config_under(root: Path, catalog: Path | None = None) -> Config:
    """A testing Config whose paths all lie under ``root``."""
    paths = PathsConfig(
        incoming_dir=root / "incoming",
        ms_dir=root / "ms",
        results_dir=root / "results",
        processed_dir=root / "processed",
        state_dir=root / "state",
        log_dir=root / "logs",
        catalog=catalog,
    )
    return Config(env="testing", paths=paths)


@pytest.fixture
def science_config(tmp_path: Path) -> Config:
    """A Config with its paths in tmp_path: science stages need no server (the root ``config``
    fixture is parametrised over live servers)."""
    return config_under(tmp_path)
