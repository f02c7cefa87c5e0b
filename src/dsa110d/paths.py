"""The one check that a path taken from a message lies inside the configured data roots.

Nothing in a message is trusted: a path is made absolute, resolved (every symlink followed,
``..`` removed) and must then lie inside one of ``PathsConfig.data_roots()`` (the incoming,
MS and results directories, themselves resolved). Otherwise :class:`PathOutsideRootsError`
says which path, where it leads and which roots were allowed. Only the *resolved* path is
used afterwards, so a symlink swapped after the check cannot redirect a read or a write out of
the roots through a name the check approved.

The watcher, processor and analyzer all call :func:`inside_roots` (or :func:`paths_inside`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from dsa110d.config import PathsConfig
from dsa110d.errors import PathOutsideRootsError

PathLike = str | os.PathLike[str]


def resolved_roots(roots: Iterable[PathLike]) -> tuple[Path, ...]:
    """The roots, absolute and with their own symlinks resolved."""
    return tuple(Path(r).absolute().resolve() for r in roots)


def inside_roots(path: object, roots: Sequence[PathLike], what: str = "path") -> Path:
    """``path`` resolved; PathOutsideRootsError unless it is an absolute path inside a root.

    ``what`` names the path in the error (e.g. ``"message 9f0c payload.files[3]"``). A value
    that is not a string, is empty, is relative or holds a NUL byte is refused the same way.
    """
    if not isinstance(path, str | os.PathLike) or not str(path) or "\x00" in str(path):
        raise PathOutsideRootsError(f"{what}: {path!r} is not a usable path")
    given = Path(path)
    if not given.is_absolute():
        raise PathOutsideRootsError(f"{what}: {str(given)!r} is not an absolute path")
    real_roots = resolved_roots(roots)
    resolved = given.resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in real_roots):
        allowed = ", ".join(str(r) for r in real_roots)
        leads = "" if str(resolved) == str(given) else f" (resolves to {resolved})"
        raise PathOutsideRootsError(f"{what}: {given}{leads} is outside the data roots ({allowed})")
    return resolved


def paths_inside(paths: object, roots: Sequence[PathLike], what: str = "paths") -> list[Path]:
    """Every path of a JSON list resolved with :func:`inside_roots` (a non-list is refused)."""
    if not isinstance(paths, list) or not paths:
        raise PathOutsideRootsError(f"{what}: expected a non-empty list of paths, got {paths!r}")
    return [inside_roots(p, roots, f"{what}[{i}]") for i, p in enumerate(paths)]


def data_roots(paths: PathsConfig) -> tuple[Path, ...]:
    """The configured data roots (incoming, MS, results), as configured (not yet resolved)."""
    return paths.data_roots()
