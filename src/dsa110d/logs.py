"""Logging set-up: structlog over the stdlib, so third-party loggers share one pipeline.

JSON lines on stdout under systemd (``JOURNAL_STREAM``) or with ``--log-format json``;
coloured, readable lines on a terminal; optionally also ``<log_dir>/<service>.log`` (JSON).
Context such as the service, set, block or message id is bound with :func:`bind`.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "json", "console"]

# Chatty libraries, kept to warnings unless the operator asks for DEBUG.
_QUIET_LOGGERS = ("redis", "asyncio", "watchfiles", "pyuvdata", "casacore", "matplotlib", "h5py")
_REDACTED = "***"

_secrets: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Never print this string: every log record has it replaced by '***'."""
    if secret:
        _secrets.add(secret)


def _redact_secrets(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if not _secrets:
        return event_dict
    for key, value in event_dict.items():
        if isinstance(value, str) and any(s in value for s in _secrets):
            # longest first: a secret that holds a shorter one must go whole, not leave its rest
            for secret in sorted(_secrets, key=len, reverse=True):
                value = value.replace(secret, _REDACTED)
            event_dict[key] = value
    return event_dict


def _shared_processors() -> list[structlog.typing.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _redact_secrets,
    ]


def choose_format(requested: LogFormat, environ: Mapping[str, str] = os.environ) -> str:
    """``json`` under systemd or when asked; ``console`` on a terminal or when asked."""
    if requested != "auto":
        return requested
    if environ.get("JOURNAL_STREAM") or not sys.stdout.isatty():
        return "json"
    return "console"


def _renderer(fmt: str) -> structlog.typing.Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())


def configure(
    level: str = "INFO",
    fmt: LogFormat = "auto",
    log_file: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Install the handlers; idempotent, so SIGHUP may call it again with a new level."""
    level = environ.get("DSA110_LOG_LEVEL", level).upper()
    chosen = choose_format(fmt, environ)
    shared = _shared_processors()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handlers: list[logging.Handler] = [_handler(logging.StreamHandler(sys.stdout), chosen, shared)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.WatchedFileHandler(log_file)
        handlers.append(_handler(file_handler, "json", shared))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    quiet_level = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet_level)
    logging.captureWarnings(True)


def _handler(
    handler: logging.Handler, fmt: str, shared: Iterable[structlog.typing.Processor]
) -> logging.Handler:
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=list(shared),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact_secrets,  # again: a traceback's text exists only from here on
                _renderer(fmt),
            ],
        )
    )
    return handler


def set_level(level: str) -> None:
    """Change the root level at run time (SIGHUP)."""
    logging.getLogger().setLevel(level.upper())


def get_logger(name: str | None = None, **context: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger, optionally with bound context."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger.bind(**context) if context else logger


bind = structlog.contextvars.bind_contextvars
unbind = structlog.contextvars.unbind_contextvars
bound = structlog.contextvars.bound_contextvars
