"""One logging setup: JSON lines when not on a TTY (a Job's logs), text on a terminal.

Logs go to stderr; stdout carries only the JSON outcome, so `trainer train | jq` works.
"""

from __future__ import annotations

import logging
import logging.config
import sys

QUIET_LOGGERS = ("mlflow", "urllib3", "httpx", "httpcore", "alembic", "git")


def configure_logging(level: str, fmt: str | None) -> None:
    """`level` and `fmt` come from Settings (LOG_LEVEL, LOG_FORMAT); no `fmt` means text on a terminal, else json."""
    fmt = fmt or ("text" if sys.stderr.isatty() else "json")
    formatters = {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
    }
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"default": formatters["json" if fmt == "json" else "text"]},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "default",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"level": level, "handlers": ["stderr"]},
            # Chatty at INFO (one line per HTTP request); their warnings still show.
            "loggers": {name: {"level": "WARNING"} for name in QUIET_LOGGERS},
        }
    )
