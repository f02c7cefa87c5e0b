"""What starting, stopping and restarting a daemon looks like, whoever does it: the
:class:`Backend` interface, the :class:`Outcome` of one action on one instance, and the
instance names (``all``, ``service_manager`` or a service's name) that ``dsa110d@.service`` takes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dsa110d import catalogue

INSTANCES = catalogue.INSTANCES  # what dsa110d@.service takes


@dataclass(frozen=True)
class Outcome:
    """What one start, stop or restart did to one instance."""

    service: str
    action: str
    ok: bool
    detail: str
    pid: int | None = None
    backend: str = "process"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_instance(service: str) -> str:
    """The instance name (``all``, ``service_manager`` or a service's seed name, whichever of
    its names it was given by); anything else is a usage error."""
    return catalogue.instance_name(service)


class Backend:
    """Start, stop and restart instances (``all`` or one service)."""

    name = "?"

    async def start(self, service: str) -> Outcome:
        raise NotImplementedError

    async def stop(self, service: str | None) -> list[Outcome]:
        raise NotImplementedError

    async def restart(self, service: str) -> Outcome:
        raise NotImplementedError

    def running(self) -> dict[str, int]:
        """Instance name -> main pid of what this backend started and still runs."""
        raise NotImplementedError
