"""The built-in services, each named once: its name, its configuration section, its class.

Every place that names a service (``dsa110d run --services``, ``dsa110ctl``, the scripts, the
systemd instance ``dsa110d@NAME``) goes through this table, so each built-in service answers to
both of its names:

=============  ==========================  =====================================================
name           seed name (config section)  class (in ``dsa110d.services``)
=============  ==========================  =====================================================
``watcher``    ``hdf5_watcher``            ``watcher.HDF5WatcherService``
``processor``  ``ms_processor``            ``processor_service.MSProcessorService``
``analyzer``   ``variability_analyzer``    ``analyzer.VariabilityAnalyzerService``
``web``        ``web``                     ``web.WebService`` (runs only where enabled)
=============  ==========================  =====================================================

Besides these, ``all`` is every built-in service and ``service_manager`` is the manager alone
(control, health, alerts, housekeeping; no pipeline service). A running instance is known by
its *instance name*, the seed's name: its log file in development is ``<log_dir>/<instance>.log``
(``hdf5_watcher.log``...). Services added through ``$DSA110_SERVICE_MODULES`` (see
:mod:`dsa110d.plugins`) have one name, their registered one.

This module imports nothing heavy: the classes are named by import path and loaded on demand.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from dsa110d.errors import ConfigError

ALL = "all"
"""Every built-in service in one process."""
MANAGER = "service_manager"
"""The manager alone: control, health, alerts and housekeeping, no pipeline service."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One built-in service."""

    name: str
    """The registered name (``--services watcher``)."""
    section: str
    """Its configuration section ``services.<section>``, which is also the seed's name for it."""
    cls: str
    """``module:Class`` of its :class:`dsa110d.services.base.Service`."""

    @property
    def module(self) -> str:
        return self.cls.partition(":")[0]

    def load(self) -> type:
        module, _, name = self.cls.partition(":")
        loaded: type = getattr(importlib.import_module(module), name)
        return loaded


SERVICES: tuple[CatalogueEntry, ...] = (
    CatalogueEntry("watcher", "hdf5_watcher", "dsa110d.services.watcher:HDF5WatcherService"),
    CatalogueEntry(
        "processor", "ms_processor", "dsa110d.services.processor_service:MSProcessorService"
    ),
    CatalogueEntry(
        "analyzer", "variability_analyzer", "dsa110d.services.analyzer:VariabilityAnalyzerService"
    ),
    CatalogueEntry("web", "web", "dsa110d.services.web:WebService"),
)
BUILTIN: tuple[str, ...] = tuple(e.name for e in SERVICES)
"""The built-in services' names, in pipeline order (what ``all`` runs)."""
_BY_ANY_NAME = {**{e.name: e for e in SERVICES}, **{e.section: e for e in SERVICES}}

INSTANCES: tuple[str, ...] = tuple(
    dict.fromkeys((ALL, *(e.section for e in SERVICES), MANAGER, *BUILTIN))
)  # web's seed name is its name: once
"""Every name an instance (a ``dsa110d`` process, a ``dsa110d@NAME`` unit) may be given."""


def entry(name: str) -> CatalogueEntry | None:
    """The built-in service called ``name`` by either of its names; None for any other."""
    return _BY_ANY_NAME.get(name)


def section_of(name: str) -> str | None:
    """The configuration section of a built-in service (None for a plugin service)."""
    found = entry(name)
    return None if found is None else found.section


def canonical(name: str) -> str:
    """The registered name of a service given by either name (a plugin's stays as given)."""
    found = entry(name)
    return name if found is None else found.name


def instance_name(name: str) -> str:
    """The name an instance is known by (pid file, log file): the seed's name for a built-in
    service, ``all`` or ``service_manager`` as given; raises ConfigError for anything else."""
    if name in (ALL, MANAGER):
        return name
    found = entry(name)
    if found is None:
        raise ConfigError(f"unknown service {name!r}: choose from {', '.join(INSTANCES)}")
    return found.section


def services_of(instance: str) -> list[str]:
    """The registered names an instance runs: all built-in ones for ``all``, none for
    ``service_manager``, else the one service (ConfigError for an unknown name)."""
    if instance == ALL:
        return list(BUILTIN)
    if instance == MANAGER:
        return []
    return [canonical(instance_name(instance))]


__all__ = [
    "ALL",
    "BUILTIN",
    "INSTANCES",
    "MANAGER",
    "SERVICES",
    "CatalogueEntry",
    "canonical",
    "entry",
    "instance_name",
    "section_of",
    "services_of",
]
