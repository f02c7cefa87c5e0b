"""Loading: one YAML file of shared defaults plus per-environment overlays, then
``DSA110__SECTION__KEY`` environment variables, validated into a :class:`Config`; every failure
is one :class:`~dsa110d.errors.ConfigError` line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dsa110d.config.model import SECRET_PATHS, Config
from dsa110d.errors import ConfigError, describe

__all__ = [
    "CONFIG_ERROR_MAX_CHARS",
    "CONFIG_SEARCH_PATH",
    "DEFAULT_ENV",
    "ENVIRONMENTS",
    "ENV_VAR_PREFIX",
    "apply_environ_overrides",
    "check_file",
    "deep_merge",
    "describe_validation_error",
    "load_config",
    "overlay_document",
    "read_document",
    "resolve_env",
    "resolve_path",
    "validate",
]


ENVIRONMENTS = ("development", "production", "testing")
DEFAULT_ENV = "development"
ENV_VAR_PREFIX = "DSA110__"
CONFIG_ERROR_MAX_CHARS = 1000  # one line naming the file, the key and the fault
CONFIG_SEARCH_PATH = (Path("etc/dsa110/services.yaml"), Path("/etc/dsa110/services.yaml"))


def resolve_env(env: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """``--env``, else ``DSA110_ENV``, else development."""
    chosen = env or environ.get("DSA110_ENV") or DEFAULT_ENV
    if chosen not in ENVIRONMENTS:
        raise ConfigError(
            f"unknown environment {chosen!r}: choose one of {', '.join(ENVIRONMENTS)}"
        )
    return chosen


def resolve_path(path: Path | None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """``--config``, else ``DSA110_CONFIG``, else the first search-path file that exists."""
    if path is not None:
        return path
    if environ.get("DSA110_CONFIG"):
        return Path(environ["DSA110_CONFIG"])
    return next((p for p in CONFIG_SEARCH_PATH if p.exists()), None)


def load_config(
    path: Path | None = None,
    env: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Config:
    """Load, overlay and validate; every failure is one ConfigError line."""
    try:
        chosen_env = resolve_env(env, environ)
        chosen_path = resolve_path(path, environ)
        document = read_document(chosen_path) if chosen_path is not None else {}
        source = str(chosen_path) if chosen_path is not None else "built-in defaults"
        merged = overlay_document(document, chosen_env, source)
        merged = apply_environ_overrides(merged, environ)
        merged["env"] = chosen_env
        return validate(merged, source)
    except ConfigError as exc:
        # Key paths and variable names come from the input and may hold newlines or
        # terminal escapes: the line printed is always one printable line.
        raise ConfigError(describe(exc, CONFIG_ERROR_MAX_CHARS)) from None


def _parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` whose every failure is a YAMLError: PyYAML lets ValueError out of
    its constructors (an impossible date, an integer of 5000 digits) and RecursionError out
    of its composer (brackets nested thousands deep)."""
    try:
        return yaml.safe_load(text)
    except (ValueError, OverflowError, RecursionError) as exc:
        raise yaml.YAMLError(describe(exc)) from None


def check_file(
    path: Path, env: str | None = None, environ: Mapping[str, str] = os.environ
) -> dict[str, ConfigError | None]:
    """Validate ``path`` for ``env``, or without one for every environment the file defines
    (the default one when it defines none): a fault in ``defaults`` that one environment's
    overlay hides must still be found. Environment name -> its error, or None when valid."""
    document = read_document(path)
    if env is not None:
        names = [resolve_env(env, environ)]
    else:
        defined = document.get("environments")
        names = [n for n in ENVIRONMENTS if isinstance(defined, dict) and n in defined]
        names = names or [DEFAULT_ENV]
    results: dict[str, ConfigError | None] = {}
    for name in names:
        try:
            load_config(path, name, environ)
            results[name] = None
        except ConfigError as exc:
            results[name] = exc
    return results


def read_document(path: Path) -> dict[str, Any]:
    """Parse the YAML file; a syntax error names the file and line."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        document = _parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {exc}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: top level must be a mapping with 'defaults' and 'environments'")
    return document


def overlay_document(document: Mapping[str, Any], env: str, source: str) -> dict[str, Any]:
    """Deep-merge ``defaults`` with ``environments[env]``."""
    unknown = set(document) - {"defaults", "environments"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key {sorted(unknown)[0]!r} "
            "(expected 'defaults' and 'environments')"
        )
    defaults = _mapping(document.get("defaults"), f"{source}: defaults")
    environments = _mapping(document.get("environments"), f"{source}: environments")
    for name in environments:
        if name not in ENVIRONMENTS:
            raise ConfigError(
                f"{source}: environments.{name}: unknown environment "
                f"(choose one of {', '.join(ENVIRONMENTS)})"
            )
    overlay = _mapping(environments.get(env), f"{source}: environments.{env}")
    return deep_merge(defaults, overlay)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(value).__name__}")
    return value


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``overlay`` wins, nested mappings merge key by key."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_environ_overrides(
    document: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, Any]:
    """Apply ``DSA110__A__B=value``: the path is lower-cased, the value parsed as YAML (a
    secret, :data:`SECRET_PATHS`, is taken as the plain string)."""
    result = dict(document)
    for name in sorted(environ):
        if not name.startswith(ENV_VAR_PREFIX):
            continue
        keys = [part.lower() for part in name[len(ENV_VAR_PREFIX) :].split("__")]
        if not all(keys):
            raise ConfigError(f"{name}: malformed override name (use DSA110__SECTION__KEY)")
        if tuple(keys) in SECRET_PATHS:
            value: Any = environ[name]  # a secret is the string as given, never YAML
        else:
            try:
                value = _parse_yaml(environ[name])
            except yaml.YAMLError:
                value = environ[name]
        override: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            override = {key: override}
        result = deep_merge(result, override)
    return result


def validate(document: Mapping[str, Any], source: str) -> Config:
    """Build the Config; the first validation error becomes one line naming the key path."""
    try:
        return Config.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line: ``key.path: what is wrong (got value)``."""
    error = exc.errors(include_url=False)[0]
    path = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key (check its spelling)"
    message = error["msg"].removeprefix("Value error, ")
    secret = any(tuple(error["loc"][: len(p)]) == p for p in SECRET_PATHS)
    hidden = secret or kind in {"missing"} or "input" not in error
    shown = "" if hidden else _shown(error["input"])
    where = f"{path}: " if path else ""
    return f"{where}{message}{shown}"


def _shown(value: Any) -> str:
    if isinstance(value, dict | list):
        return ""
    return f" (got {value!r})"
