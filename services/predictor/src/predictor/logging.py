"""One logging setup for the predictor and uvicorn: JSON lines in pods, text on a terminal.

Every record carries the request id of the request being served (from a context variable set by the
HTTP middleware) and the name and version of the model: the one that answered the request (a context
variable, so a canary's requests name the canary), else the champion being served.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from contextvars import ContextVar
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
answering_model_var: ContextVar[tuple[str, str] | None] = ContextVar("answering_model", default=None)
_served_model: dict[str, str | None] = {"model_name": None, "model_version": None}


def set_served_model(name: str, version: str) -> None:
    """Called on every champion swap so later records outside a request name the version being served."""
    _served_model.update(model_name=name, model_version=version)


class ContextFilter(logging.Filter):
    """Adds `request_id`, `model_name` and `model_version` to every record that lacks them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        answering = answering_model_var.get()
        model = dict(zip(_served_model, answering, strict=True)) if answering else _served_model
        for key, value in model.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def logging_config(level: str, fmt: str | None, stream: str = "stdout") -> dict[str, Any]:
    """The dictConfig for our loggers and uvicorn's (passed to uvicorn as `log_config`).

    `level` and `fmt` come from Settings (LOG_LEVEL, LOG_FORMAT); no `fmt` means text on a terminal, else json.
    """
    fmt = fmt or ("text" if sys.stdout.isatty() else "json")
    formatters = {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(model_name)s %(model_version)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"},
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"default": formatters["json" if fmt == "json" else "text"]},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["context"],
                "stream": f"ext://sys.{stream}",
            }
        },
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            # uvicorn's own handlers are replaced by ours; its access log is off (the middleware logs requests).
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            # MLflow and urllib3 are chatty at INFO; their warnings still show.
            **{name: {"level": "WARNING"} for name in ("mlflow", "urllib3", "alembic", "git")},
        },
    }


def configure_logging(level: str, fmt: str | None, stream: str = "stdout") -> dict[str, Any]:
    """`stream="stderr"` for a command whose stdout is its result (`predictor labels import`)."""
    config = logging_config(level, fmt, stream)
    logging.config.dictConfig(config)
    return config
