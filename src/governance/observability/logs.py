"""Logging for every process: one JSON object per line (or key=value text for a terminal).

The standard `logging` module stays the one API, so uvicorn's, the library's and our own records
go through the same handler; python-json-logger only formats. Fields passed with `extra=` become
keys of the line. Nothing here ever sees a header, a token or a secret: callers pass only
the fields they mean to log.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["json", "text"]

ACCESS = logging.getLogger("governance.access")
COMMANDS = logging.getLogger("governance.commands")

# Record attributes that are not fields of a line (uvicorn adds an ANSI-coloured copy of its text).
_NOT_FIELDS = [*RESERVED_ATTRS, "color_message"]
_STANDARD = frozenset(_NOT_FIELDS) | {"message", "asctime", "taskName"}


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...`: the same fields as JSON, easier on the eye."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={_plain(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and value is not None
        ]
        return " ".join([line, *extras])


def _plain(value: object) -> str:
    text = str(value)
    # Quoted (and escaped) when a value could be mistaken for the next field or a new line.
    return json.dumps(text) if not text or any(c.isspace() or c in '="' for c in text) else text


class _JsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def json_formatter() -> JsonFormatter:
    return _JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        reserved_attrs=_NOT_FIELDS,
    )


def configure_logging(log_format: LogFormat, level: str) -> None:
    """Send every logger's records to stderr in `log_format`, uvicorn's included."""
    formatter: dict[str, Any] = (
        {"()": json_formatter} if log_format == "json" else {"()": TextFormatter}
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"default": formatter},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "default",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"handlers": ["stderr"], "level": level.upper()},
            "loggers": {
                # uvicorn's own lines (start, stop) reach the root handler; its access log is
                # replaced by ours, which knows the route, the account and the request id.
                "uvicorn": {"handlers": [], "propagate": True},
                "uvicorn.error": {"handlers": [], "propagate": True},
                "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            },
        }
    )
