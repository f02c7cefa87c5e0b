"""PLACEHOLDERS for the services not written yet, so ``dsa110d run`` runs before they exist.

The real HDF5 watcher, MS processor and variability analyzer are written in later issues;
each replaces its placeholder here by registering its own class under the same name (and
:data:`dsa110d.services.base.BUILTIN_MODULES` then lists its module instead of this one).
A placeholder does no work: it idles, beating, and reports healthy with a reason saying so.
"""

from __future__ import annotations

from dsa110d.services.base import HealthReport, Service, ServiceContext, register_service

IDLE_SEC = 3600.0


class _Placeholder(Service):
    """Idle until stopping; the service this stands in for is not written yet."""

    async def run(self, ctx: ServiceContext) -> None:
        while await ctx.take_work():
            await ctx.sleep(IDLE_SEC)

    def health(self) -> HealthReport:
        return HealthReport.healthy()


@register_service("analyzer")
class AnalyzerPlaceholder(_Placeholder):
    """PLACEHOLDER for the variability analyzer (issue: analyzer)."""
