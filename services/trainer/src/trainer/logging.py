"""One logging setup for the trainer: JSON lines when not on a TTY (a Job's logs), text on a terminal."""

from __future__ import annotations

import logging
import logging.config
import os
import sys


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    level = (level or os.environ.get("LOG_LEVEL", "INFO")).upper()
    fmt = fmt or os.environ.get("LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json")
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
            # MLflow and urllib3 are chatty at INFO; their warnings still show.
            "loggers": {name: {"level": "WARNING"} for name in ("mlflow", "urllib3", "alembic", "git")},
        }
    )
