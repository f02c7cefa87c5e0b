"""The one check for paths that arrive in messages: they must lie inside the data roots.

A message is untrusted input. Before any file is read, written or removed because a message
named it, the path is resolved (symlinks and ``..`` included) and must be one of the roots or
lie below one (``paths.data_roots()``); otherwise :class:`~dsa110d.errors.PathOutsideRootsError`
names the path and the roots, and the consumer sends the message to the dead letters.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from dsa110d.errors import PathOutsideRootsError


def confine(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]]) -> Path:
    """``path`` resolved, if it lies inside one of ``roots`` (also resolved); else raise.

    A relative path is refused rather than resolved against the current directory, which a
    message cannot know. The path need not exist (a missing file is the caller's business).
    """
    text = os.fspath(path)
    if not text or "\x00" in text:
        raise PathOutsideRootsError(f"path {text!r} is empty or contains a NUL byte")
    candidate = Path(text)
    if not candidate.is_absolute():
        raise PathOutsideRootsError(f"path {text!r} is not absolute")
    resolved = candidate.resolve(strict=False)
    resolved_roots = [Path(root).resolve(strict=False) for root in roots]
    for root in resolved_roots:
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    shown = ", ".join(str(r) for r in resolved_roots) or "(none configured)"
    raise PathOutsideRootsError(
        f"path {text!r} resolves to {resolved}, outside the data roots {shown}"
    )
