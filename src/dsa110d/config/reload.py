"""What a reload (SIGHUP) may change: the reloadable sections and the keys that differ."""

from __future__ import annotations

from typing import Any

from dsa110d.config.model import Config

__all__ = ["RELOADABLE_SECTIONS", "reloadable_changes"]


RELOADABLE_SECTIONS = ("services", "logging", "supervisor", "retry", "alerts", "housekeeping")


def reloadable_changes(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """Key paths whose values differ between two configs, within the reloadable sections."""
    changes: dict[str, tuple[Any, Any]] = {}
    old_data, new_data = old.model_dump(mode="json"), new.model_dump(mode="json")
    for section in RELOADABLE_SECTIONS:
        _diff(old_data[section], new_data[section], section, changes)
    return changes


def _diff(old: Any, new: Any, path: str, out: dict[str, tuple[Any, Any]]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old.keys() | new.keys():
            _diff(old.get(key), new.get(key), f"{path}.{key}", out)
    elif old != new:
        out[path] = (old, new)
