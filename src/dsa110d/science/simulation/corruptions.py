"""What the instrument and the site do to the sky's visibilities, for the simulator to apply.

The simulator is the pipeline's adversary (DESIGN.md section 10): it writes what the correlator
would, not what the pipeline hopes for. Each corruption is a physical model with its own module
(antenna gains, delays and bandpasses; RFI; antenna faults), switched on by a level:

- ``none``: ideal, calibrated data (the sky, the beam and thermal noise only);
- ``gains``: the antenna-based terms a calibration must undo;
- ``all``: those plus RFI and antenna faults.

A corruption acts on each chunk of integrations in place, after the sky and the noise are in
(receiver noise passes through the same electronics as the sky), and describes itself for the
truth file, so a test can compare what the pipeline solved or flagged with what was done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

LEVELS = ("none", "gains", "all")
"""Corruption levels, each including the previous one's corruptions."""
DEFAULT_LEVEL_BY_SCALE = {"real": "all"}
"""The level when none is asked for: the real scale is corrupted like the real telescope;
the smaller scales stay ideal unless asked."""


@dataclass(frozen=True)
class ChunkContext:
    """Where a chunk of visibilities sits: what a corruption needs to know to act on it."""

    set_index: int
    first_integration: int
    """Index of the chunk's first integration within its set."""
    time_jd: NDArray[np.float64]
    """The chunk's integration centres, (Nt,)."""
    ant_1: NDArray[np.int64]
    """Antenna number of each baseline's first antenna, (Nbls,)."""
    ant_2: NDArray[np.int64]
    freq_hz: NDArray[np.float64]
    """Channel frequencies, (Nsubbands, Nchannels)."""
    sefd_jy: float


@dataclass(frozen=True)
class InstrumentContext:
    """What a corruption is built from: the run's array, band, time span and random stream."""

    antenna_numbers: NDArray[np.int64]
    """The antennas with data (the baselines' antenna numbers)."""
    freq_hz: NDArray[np.float64]
    """Channel frequencies, (Nsubbands, Nchannels)."""
    start_jd: float
    end_jd: float
    integration_s: float
    sefd_jy: float
    rng: np.random.Generator


class Corruption(Protocol):
    """One physical corruption model."""

    name: str

    def apply(self, vis: NDArray[np.complex64], chunk: ChunkContext) -> None:
        """Corrupt ``vis`` in place: shape (Nt, Nbls, Nsubbands, Nchannels, 2 pols XX, YY)."""
        ...

    def truth(self) -> dict[str, Any]:
        """What was done, as JSON-ready data for the truth file."""
        ...


CorruptionFactory = Callable[[InstrumentContext], Corruption]

_FACTORIES: dict[str, list[CorruptionFactory]] = {level: [] for level in LEVELS}


def register(level: str, factory: CorruptionFactory) -> CorruptionFactory:
    """Make ``factory``'s corruption part of ``level`` and of every level above it."""
    if level not in LEVELS or level == "none":
        raise ValueError(f"a corruption belongs to one of {LEVELS[1:]}, not {level!r}")
    _FACTORIES[level].append(factory)
    return factory


def resolve_level(level: str | None, scale: str) -> str:
    """The level asked for, or the scale's default; an unknown level is a ValueError."""
    chosen = DEFAULT_LEVEL_BY_SCALE.get(scale, "none") if level is None else level
    if chosen not in LEVELS:
        raise ValueError(f"unknown corruption level {chosen!r}; choose {', '.join(LEVELS)}")
    return chosen


def build(level: str, instrument: InstrumentContext) -> list[Corruption]:
    """The corruptions of ``level``, in the order they act (antenna terms before RFI)."""
    _load_models()
    wanted = LEVELS[1 : LEVELS.index(level) + 1]
    return [factory(instrument) for name in wanted for factory in _FACTORIES[name]]


MODEL_MODULES: tuple[str, ...] = ("corrupt_gains", "corrupt_rfi")
"""The modules of ``dsa110d.science.simulation`` that hold corruption models: each registers
its factories with ``register`` when imported."""


def _load_models() -> None:
    import importlib

    for name in MODEL_MODULES:
        importlib.import_module(f"dsa110d.science.simulation.{name}")
