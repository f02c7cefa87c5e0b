"""The block pipeline: the Stage interface, the registry of stages, and running them in order.

A **stage** is a named callable that does one step of a block's processing::

    def my_stage(job: BlockJob, ms_paths: Sequence[Path], config: Config, scratch: Path)
        -> StageResult

- ``job`` is the block being processed (:class:`dsa110d.science.blocks.Block`), the version
  of this run (1 for the first, +1 each time a late chunk re-runs the block: newer results
  supersede older ones) and the slots processed without their chunk (after the timeout).
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

Built-in stages are ``flag``, ``photometry`` and ``image``. Other packages add stages by
declaring an entry point in the group ``dsa110d.stages`` whose value is the callable, e.g.
in pyproject.toml::

    [project.entry-points."dsa110d.stages"]
    my_stage = "mypackage.module:my_stage"

``config.pipeline.stages`` lists the stage names to run, in order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal, Protocol

from dsa110d.config import Config
from dsa110d.errors import ConfigError, DSA110Error, StageError
from dsa110d.science.blocks import Block

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dsa110d.stages"
SummaryValue = str | int | float | bool | None


@dataclass(frozen=True)
class BlockJob:
    """One processing run of a block: which block, which version, which slots are missing."""

    block: Block
    version: int = 1
    missing_slots: tuple[int, ...] = ()

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


def builtin_stages() -> dict[str, Stage]:
    """The stages shipped with dsa110d, by name."""
    # Imported here: the stage modules import this module for the interface types.
    from dsa110d.science.flagging import flag_stage
    from dsa110d.science.imaging import image_stage
    from dsa110d.science.photometry import photometry_stage

    return {"flag": flag_stage, "photometry": photometry_stage, "image": image_stage}


def plugin_stages() -> dict[str, Callable[..., StageResult]]:
    """Stages registered by other packages under the entry-point group ``dsa110d.stages``."""
    found: dict[str, Callable[..., StageResult]] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            stage = point.load()
        except Exception as exc:  # a broken plugin must not take the built-ins down
            log.warning("stage plugin %s (%s) cannot be loaded: %s", point.name, point.value, exc)
            continue
        if not callable(stage):
            log.warning("stage plugin %s (%s) is not callable", point.name, point.value)
            continue
        found[point.name] = stage
    return found


def registry() -> dict[str, Stage]:
    """Every known stage by name; a plugin may not replace a built-in."""
    stages: dict[str, Stage] = {}
    builtins = builtin_stages()
    for name, stage in plugin_stages().items():
        if name in builtins:
            log.warning("stage plugin %s ignored: it shadows a built-in stage", name)
            continue
        stages[name] = stage
    stages.update(builtins)
    return stages


def build_pipeline(
    config: Config, known: Mapping[str, Stage] | None = None
) -> list[tuple[str, Stage]]:
    """The ordered stages of ``config.pipeline.stages``; an unknown name is a ConfigError."""
    known = registry() if known is None else known
    pipeline = []
    for position, name in enumerate(config.pipeline.stages):
        if name not in known:
            raise ConfigError(
                f"pipeline.stages[{position}]: unknown stage {name!r} "
                f"(known: {', '.join(sorted(known))})"
            )
        pipeline.append((name, known[name]))
    return pipeline


def run_pipeline(
    pipeline: Sequence[tuple[str, Stage]],
    job: BlockJob,
    ms_paths: Sequence[Path],
    config: Config,
    scratch: Path,
) -> list[StageResult]:
    """Run each stage in order on one block; the first failure stops the block."""
    results = []
    for name, stage in pipeline:
        stage_scratch = scratch / name
        stage_scratch.mkdir(parents=True, exist_ok=True)
        try:
            result = stage(job, ms_paths, config, stage_scratch)
        except DSA110Error:
            raise
        except Exception as exc:
            raise StageError(
                f"stage {name} failed on block {job.block_id}: {type(exc).__name__}: {exc}"
            ) from exc
        log.info("stage %s on block %s: %s %s", name, job.block_id, result.status, result.message)
        results.append(result)
    return results
