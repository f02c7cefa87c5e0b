"""The stage interface: what a stage of the block pipeline is given and what it returns.

A **stage** is a named callable that does one step of a block's processing::

    def my_stage(job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path)
        -> StageResult

- ``job`` is the block being processed (:class:`dsa110d.science.pipeline.blocks.Block`), the version
  of this run (1 for the first, +1 each time a late chunk re-runs the block: newer results
  supersede older ones), the slots processed without their chunk (after the timeout) and the
  monitored new sources (the blind search's, measured from then on).
- ``ms_paths`` are the block's Measurement Sets (one per 5-minute chunk), in time order.
  A stage may modify them in place only for what it owns (``flag`` writes the FLAG column);
  it must never delete them.
- ``config`` is the daemon's effective :class:`dsa110d.config.Config` (paths.results_dir,
  paths.catalog...).
- ``scratch`` is an empty private directory, removed by the caller after the pipeline.
  Final outputs go under ``config.paths.results_dir``, published with
  :mod:`dsa110d.science.atomic` so that a file under its final name is always complete.

It returns a :class:`StageResult`: ``status`` ``"ok"`` or ``"skipped"`` (a stage that cannot
apply, e.g. ``image`` without wsclean: not an error), the output paths by kind, and a small
JSON-able summary. A stage that fails raises (a :class:`dsa110d.errors.DSA110Error` for a
known cause); :func:`run_pipeline` turns anything else into a one-line ``StageError``.
Stages run synchronously in a worker process; they log through stdlib ``logging`` only.

How stages are registered and run: :mod:`dsa110d.science.pipeline.stages`; the public API
for a stage of another package: :mod:`dsa110d.plugins`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from dsa110d.config import Config
from dsa110d.science.pipeline.blocks import Block

if TYPE_CHECKING:  # the stage interface stays light: dsa110ctl reads it without pandas
    from dsa110d.science.imaging.monitoring import MonitoredSource

MOSTLY_FLAGGED = "mostly_flagged"
"""A stage summary's ``status`` that ends the block's pipeline: the later stages do not run."""

SummaryValue = str | int | float | bool | None


@dataclass(frozen=True)
class BlockJob:
    """One processing run of a block: which block, which version, which slots are missing."""

    block: Block
    version: int = 1
    missing_slots: tuple[int, ...] = ()
    monitored: tuple[MonitoredSource, ...] = ()
    """The monitored new sources (``state.monitored``) forced photometry measures beside the
    catalog's."""

    @property
    def block_id(self) -> str:
        return self.block.id


@dataclass(frozen=True)
class StageResult:
    """What a stage did: its status, its outputs (kind -> path) and a JSON-able summary."""

    stage: str
    status: Literal["ok", "skipped"]
    outputs: Mapping[str, str] = field(default_factory=dict)
    summary: Mapping[str, SummaryValue] = field(default_factory=dict)
    message: str = ""


class Stage(Protocol):
    """The stage interface (see the module docstring)."""

    def __call__(
        self, job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path
    ) -> StageResult: ...
