"""The Lua scripts of the state layer: one file each beside this module, loaded by name.

A script is ``<module>_<what>.lua`` (``sets_claim.lua`` is used by :mod:`dsa110d.state.sets`)
and starts with comments naming its KEYS and ARGV. Values the Python side owns (a bound, a
list of states) are passed as ARGV, never written into the source. A file whose name starts
with ``_`` is a part, not a script: a script includes it with a line ``--#include NAME``, which
:func:`source` replaces with the part's text (the one way scripts share code; Redis has no
``require``).

Every script is registered (:func:`script`): redis-py runs it by EVALSHA and loads it when the
server does not have it, also inside a pipeline (:func:`queue`). There is no bare EVAL.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from dsa110d.errors import StateError
from dsa110d.state.connection import Redis

INCLUDE = "--#include "


@functools.cache
def source(name: str) -> str:
    """The text of ``<name>.lua`` with its ``--#include`` lines replaced by the parts."""
    path = resources.files(__package__).joinpath(f"{name}.lua")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StateError(f"no Lua script {name}.lua in {__package__}") from None
    lines = [
        source(line.removeprefix(INCLUDE).strip()).rstrip("\n")
        if line.startswith(INCLUDE)
        else line
        for line in text.splitlines()
    ]
    return "\n".join(lines) + "\n"


def names() -> list[str]:
    """Every script (not the parts) shipped with the package."""
    found = resources.files(__package__).iterdir()
    return sorted(
        p.name.removesuffix(".lua")
        for p in found
        if p.name.endswith(".lua") and not p.name.startswith("_")
    )


def script(redis: Redis, name: str) -> AsyncScript:
    """The script ``name`` registered on ``redis``: call it with ``keys=`` and ``args=``."""
    return redis.register_script(source(name))


def queue(
    pipe: Pipeline, registered: AsyncScript, keys: Sequence[str], args: Sequence[Any]
) -> None:
    """Queue a registered script on a pipeline or transaction without awaiting it (the
    pipeline loads the script before it executes, as redis-py does for ``script(client=)``)."""
    pipe.scripts.add(registered)  # type: ignore[arg-type]  # the stub names only Script
    pipe.evalsha(registered.sha, len(keys), *keys, *args)
