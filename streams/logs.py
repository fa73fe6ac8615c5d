"""Log format of the worker and the CLI: text (default) or JSON, one object per line.

``PALLIWATCH_LOG_FORMAT=json`` makes every log record one JSON object with ``time`` (RFC 3339,
UTC), ``level``, ``logger``, ``message`` and the record's extra fields (``exc`` holds a
traceback). For log shippers that parse lines rather than guess at them.

No personal data: the pipeline never logs payloads or pseudonyms, and as a second line of
defence the JSON formatter replaces anything shaped like a Swedish personal identity number
(schemas/identity.py's detector) and any 64-hex string (the shape of a ``person_ref``) before a
line is written.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.identity import REDACTED, find_identity_numbers

ENV = "PALLIWATCH_LOG_FORMAT"
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
PSEUDONYM = "[PSEUDONYM]"

_PSEUDONYM_SHAPE = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def log_format() -> str:
    """The configured format; a wrong value stops the program with the fix."""
    value = os.environ.get(ENV, "text").strip().lower() or "text"
    if value not in FORMATS:
        raise SystemExit(f"palliwatch: {ENV}={value!r} is not a log format: use text or json")
    return value


def scrub(text: str) -> str:
    """``text`` without identity-number-shaped values or person_ref-shaped pseudonyms."""
    for found in find_identity_numbers(text):
        text = text.replace(found, REDACTED)
    return _PSEUDONYM_SHAPE.sub(PSEUDONYM, text) if len(text) >= 64 else text


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {scrub(str(k)): _plain(v) for k, v in value.items()}
    return scrub(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = _plain(value)
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = scrub(record.exc_text)
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return orjson.dumps(entry).decode()


def configure_cli(level: int = logging.WARNING) -> None:
    """Root logging for CLI commands (stderr), in the configured format."""
    if log_format() == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(level=level, format=TEXT_FORMAT)


def worker_logging_config(loglevel: str | int) -> dict[str, Any] | None:
    """A ``logging.config.dictConfig`` for Faust's worker; None keeps Faust's own text format."""
    if log_format() != "json":
        return None
    level = logging.getLevelName(loglevel.upper()) if isinstance(loglevel, str) else loglevel
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
                "level": level,
            }
        },
        "root": {"level": level, "handlers": ["default"]},
    }
