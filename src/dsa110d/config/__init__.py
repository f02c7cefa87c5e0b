"""Typed configuration: one YAML file of shared defaults plus per-environment overlays.

The file has two top-level keys, ``defaults`` and ``environments``; the effective
configuration is ``defaults`` deep-merged with ``environments[<env>]``, then with any
``DSA110__SECTION__KEY=value`` environment variables. The long story is in the README.

One pydantic model per section, in a module per part of the daemon: ``services`` (each
service's keys), ``redis``, ``runtime`` (paths, retry, streams, leases, supervisor, breakers,
metrics, logging), ``science`` (pipeline, beam, photometry, imaging, flagging, calibration),
``operations`` (alerts, housekeeping); ``model`` holds :class:`Config` and its secrets,
``loading`` reads and validates a file, ``reload`` compares two configs. A new key goes in its
section's model and in the README, ``man/dsa110d.yaml.5.scd`` and ``etc/dsa110/services.yaml``.
Every model and function is importable from here (``from dsa110d.config import Config``): each
module's ``__all__`` names its own, and this package's is theirs together; the value types
(``PositiveFloat``, ...) are ``config.section``'s.
"""

from __future__ import annotations

from dsa110d.config import (
    loading,
    model,
    operations,
    redis,
    reload,
    runtime,
    science,
    section,
    services,
)
from dsa110d.config.loading import *  # noqa: F403
from dsa110d.config.model import *  # noqa: F403
from dsa110d.config.operations import *  # noqa: F403
from dsa110d.config.redis import *  # noqa: F403
from dsa110d.config.reload import *  # noqa: F403
from dsa110d.config.runtime import *  # noqa: F403
from dsa110d.config.science import *  # noqa: F403
from dsa110d.config.section import *  # noqa: F403
from dsa110d.config.services import *  # noqa: F403

__all__: list[str] = []
__all__ += loading.__all__
__all__ += model.__all__
__all__ += operations.__all__
__all__ += redis.__all__
__all__ += reload.__all__
__all__ += runtime.__all__
__all__ += science.__all__
__all__ += section.__all__
__all__ += services.__all__
