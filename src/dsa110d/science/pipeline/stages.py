"""The block pipeline: the registry of stages and running them in order.

The interface a stage implements (:class:`Stage`, :class:`BlockJob`, :class:`StageResult`)
is in :mod:`dsa110d.science.pipeline.stage`, which is all the stages import. The built-in
stages are named here by ``module:callable`` (:data:`BUILTIN_STAGES`), as a plugin's entry
point names it, and loaded when the registry is built: the pipeline does not import the
subpackages whose stages it runs (``photometry/`` imports the interface from here).

Built-in stages are ``flag`` (AOFlagger, antenna health, flag QA), ``flag-mad`` (the light
median/MAD flagger), ``calibrate``, ``photometry`` and ``image``. A stage whose summary says
``status: mostly_flagged`` (the flag stages, for a block whose data are mostly flagged) ends the
block's pipeline: the later stages are recorded ``skipped``, so such a block is not silently
measured.

Other packages add stages by declaring an entry point in the group ``dsa110d.stages`` whose
value is the callable, e.g. in pyproject.toml::

    [project.entry-points."dsa110d.stages"]
    my_stage = "mypackage.module:my_stage"

``config.pipeline.stages`` lists the stage names to run, in order.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from dsa110d.config import Config
from dsa110d.errors import ConfigError, DSA110Error, StageError, describe
from dsa110d.science.pipeline.stage import MOSTLY_FLAGGED, BlockJob, Stage, StageResult

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dsa110d.stages"
BUILTIN_STAGES = {
    "flag": "dsa110d.science.pipeline.rfi:flag_stage",
    "flag-mad": "dsa110d.science.pipeline.flagging:flag_stage",
    "calibrate": "dsa110d.science.calibration.stage:calibrate_stage",
    "photometry": "dsa110d.science.photometry.stage:photometry_stage",
    "image": "dsa110d.science.pipeline.imaging:image_stage",
}
"""The stages shipped with dsa110d: name -> ``module:callable``."""


def builtin_stages() -> dict[str, Stage]:
    """The stages shipped with dsa110d, by name."""
    stages: dict[str, Stage] = {}
    for name, target in BUILTIN_STAGES.items():
        module, _, attribute = target.partition(":")
        stages[name] = getattr(importlib.import_module(module), attribute)
    return stages


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
                f"stage {name} failed on block {job.block_id}: {describe(exc)}"
            ) from exc
        log.info("stage %s on block %s: %s %s", name, job.block_id, result.status, result.message)
        results.append(result)
        if result.summary.get("status") == MOSTLY_FLAGGED:
            later = [n for n, _ in pipeline[len(results) :]]
            log.warning("block %s is mostly flagged: %s not run", job.block_id, later)
            reason = f"block mostly flagged by {name}"
            results += [StageResult(n, "skipped", message=reason) for n in later]
            break
    return results
