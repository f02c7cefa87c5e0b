"""The public API for code outside dsa110d: block-pipeline stages and services.

Everything a third-party stage or service needs is importable from here, and only what is
listed in ``__all__`` is promised to stay (tests/unit/test_plugins.py pins it, type-checked).

**A stage** is a callable ``stage(job, ms_paths, config, scratch) -> StageResult`` (the
:class:`Stage` protocol; see :mod:`dsa110d.science.pipeline.stage` for what each argument
holds). Register it as an entry point in the group :data:`STAGE_ENTRY_POINT_GROUP`
(``dsa110d.stages``) of your package, and name it in ``pipeline.stages``::

    [project.entry-points."dsa110d.stages"]
    my_stage = "mypackage.stages:my_stage"

A broken plugin is logged and skipped; a plugin may not replace a built-in stage.

**A service** is a subclass of :class:`Service` decorated with :func:`register_service`; its
``run(ctx)`` loops ``while await ctx.take_work(): ...`` (:class:`ServiceContext`) and reports
:class:`HealthReport` from ``health()``. List its module in ``$DSA110_SERVICE_MODULES``
(:data:`SERVICE_MODULES_VAR`) and run it with ``dsa110d run --services <name>``.

Examples of both are in docs/plugins.md.
"""

from __future__ import annotations

from dsa110d.science.pipeline.stage import BlockJob, Stage, StageResult, SummaryValue
from dsa110d.science.pipeline.stages import ENTRY_POINT_GROUP as STAGE_ENTRY_POINT_GROUP
from dsa110d.science.pipeline.stages import registry as stage_registry
from dsa110d.services.base import EXTRA_MODULES_VAR as SERVICE_MODULES_VAR
from dsa110d.services.base import (
    Health,
    HealthReport,
    Service,
    ServiceContext,
    register_service,
    registered_services,
)

__all__ = [
    "SERVICE_MODULES_VAR",
    "STAGE_ENTRY_POINT_GROUP",
    "BlockJob",
    "Health",
    "HealthReport",
    "Service",
    "ServiceContext",
    "Stage",
    "StageResult",
    "SummaryValue",
    "register_service",
    "registered_services",
    "stage_registry",
]
