"""The simulator applies registered corruptions to every chunk and records them in the truth."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from numpy.typing import NDArray

from dsa110d.science.simulation import corruptions
from dsa110d.science.simulation.simulate import SimulationSpec, simulate

pytestmark = pytest.mark.unit


@dataclass
class _ZeroFirstBaseline:
    """A corruption for the test: drops the first baseline's data to zero (a dead link)."""

    name: str = "zero_first_baseline"
    chunks: list[int] = field(default_factory=list)

    def apply(self, vis: NDArray[np.complex64], chunk: corruptions.ChunkContext) -> None:
        vis[:, 0] = 0
        self.chunks.append(chunk.first_integration)

    def truth(self) -> dict[str, Any]:
        return {"baseline_index": 0, "chunks": self.chunks}


@pytest.fixture
def zero_first_baseline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test's corruption alone (the models of MODEL_MODULES set aside)."""

    def factory(_: corruptions.InstrumentContext) -> corruptions.Corruption:
        return _ZeroFirstBaseline()

    monkeypatch.setattr(corruptions, "MODEL_MODULES", ())
    monkeypatch.setattr(corruptions, "_FACTORIES", {level: [] for level in corruptions.LEVELS})
    corruptions.register("gains", factory)
    yield


def _visdata(path: Path) -> NDArray[np.complex64]:
    with h5py.File(path, "r") as f:
        return np.asarray(f["Data/visdata"][()])


def test_levels_default_by_scale_and_reject_unknown() -> None:
    assert corruptions.resolve_level(None, "real") == "all"
    assert corruptions.resolve_level(None, "tiny") == "none"
    assert corruptions.resolve_level("gains", "tiny") == "gains"
    with pytest.raises(ValueError, match="unknown corruption level 'some'"):
        corruptions.resolve_level("some", "tiny")


def test_a_registered_corruption_acts_on_every_chunk_and_is_in_the_truth(
    tmp_path: Path,
    tiny_spec: Callable[..., SimulationSpec],
    zero_first_baseline: None,
) -> None:
    clean = simulate(tiny_spec(tmp_path / "clean", sets=1, n_subbands=1, corrupt="none"))
    dirty = simulate(
        tiny_spec(tmp_path / "dirty", sets=1, n_subbands=1, corrupt="all", calibrator=False)
    )
    clean_vis, dirty_vis = _visdata(clean.files[0]), _visdata(dirty.files[0])
    with h5py.File(clean.files[0], "r") as f:
        n_bls = int(f["Header/Nbls"][()])
    first_baseline = np.arange(len(clean_vis)) % n_bls == 0
    assert np.all(dirty_vis[first_baseline] == 0)
    assert np.any(clean_vis[first_baseline] != 0)
    # The corruptions draw no numbers from the sky's stream: everything else is bit-identical.
    np.testing.assert_array_equal(dirty_vis[~first_baseline], clean_vis[~first_baseline])
    truth = json.loads(dirty.truth_path.read_text())  # type: ignore[union-attr]
    assert truth["corrupt"] == "all"
    assert truth["corruptions"]["zero_first_baseline"]["chunks"]
    assert json.loads(clean.truth_path.read_text())["corruptions"] == {}  # type: ignore[union-attr]
