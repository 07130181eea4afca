"""Console script `predictor --host H --port P` (also `python -m predictor`): logging, settings, uvicorn.

`predictor labels import FILE` loads delayed labels from a CSV or Parquet file into the ledger instead
(ledger/labels_import.py); it prints a JSON summary and exits 1 if any row was rejected.

One worker process: scale with replicas. uvicorn handles SIGTERM gracefully: it stops accepting, lets
in-flight requests finish (up to PREDICTOR_GRACEFUL_SHUTDOWN_SECONDS), then runs the app's shutdown.

Exit status: 0 after a drained shutdown; 1 when the server cannot start (one ERROR log line says why, e.g.
the port is taken); 2 for bad usage or settings, reported as one line
`predictor: invalid settings: <VARIABLE>: <problem>` on stderr.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from typing import NoReturn

import uvicorn
from pydantic import ValidationError

from predictor.app import create_app
from predictor.config import Settings, describe_settings_error
from predictor.logging import configure_logging

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    defaults = Settings.model_fields
    parser = argparse.ArgumentParser(prog="predictor", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help=f"bind address (PREDICTOR_HOST, default {defaults['host'].default})")
    parser.add_argument(
        "--port", type=int, help=f"bind port (PREDICTOR_PORT, default {defaults['port'].default})"
    )
    commands = parser.add_subparsers(dest="command", metavar="{labels}")
    labels = commands.add_parser("labels", help="delayed labels: `predictor labels import FILE`")
    labels_commands = labels.add_subparsers(dest="labels_command", required=True)
    importer = labels_commands.add_parser(
        "import",
        help="store the labels of a CSV or Parquet file (columns id, actual, optional time) in the ledger",
        description="Store labels from a file in PREDICTOR_LEDGER_DATABASE_URL, with the feedback route's rules.",
    )
    importer.add_argument("file", help="a .csv or .parquet file, or - for CSV on standard input")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args)
    except ValidationError as exc:  # before logging is set up: its level and format are settings too
        print(f"predictor: invalid settings: {describe_settings_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "labels":
        return import_labels_command(settings, args.file)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars in JSON logs
    log_config = configure_logging(settings.log_level, settings.log_format)
    # uvicorn drains on SIGTERM, then re-raises the signal to whatever handler was there before it
    # started: with the default one the process dies "terminated by SIGTERM" (143), and Kubernetes
    # shows every pod a scale-down or rollout stopped as Error. A drained shutdown is a clean exit,
    # and an immediate one: sys.exit would wait for model loads still running in worker threads.
    signal.signal(signal.SIGTERM, _exit_after_drain)
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=log_config,
            access_log=False,  # RequestContextMiddleware logs each request once, with its request id
            timeout_graceful_shutdown=math.ceil(
                settings.graceful_shutdown_seconds
            ),  # uvicorn takes whole seconds
            loop="uvloop",
            http="httptools",
        )
    except SystemExit as exc:  # uvicorn logs why it cannot start (e.g. the port is taken), then exits 3
        if exc.code:
            _exit_now(EXIT_FAILED)
        raise
    return EXIT_OK


def import_labels_command(settings: Settings, file: str) -> int:
    if settings.ledger_url is None:
        print(
            "predictor: invalid settings: PREDICTOR_LEDGER_DATABASE_URL: required by `labels import`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format, stream="stderr")  # stdout: the summary
    import orjson
    import sqlalchemy as sa

    from predictor.ledger.labels_import import ImportFileError, import_labels, read_labels_file
    from predictor.ledger.store import LedgerStore, create_ledger_engine, migrate

    log = logging.getLogger("predictor")
    try:
        frame = read_labels_file(file)
        engine = create_ledger_engine(settings.ledger_url)
        migrate(engine)
        summary = import_labels(frame, LedgerStore(engine))
    except ImportFileError as exc:
        log.error("labels import failed: %s", exc)
        return EXIT_FAILED
    except sa.exc.SQLAlchemyError as exc:
        # Chunks stored before the failure stay stored; importing the file again is safe (idempotent).
        log.error("labels import failed: the ledger database: %s", getattr(exc, "orig", None) or exc)
        return EXIT_FAILED
    sys.stdout.write(orjson.dumps(summary.as_dict()).decode() + "\n")
    return EXIT_FAILED if summary.rejected else EXIT_OK


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {"host": getattr(args, "host", None), "port": getattr(args, "port", None)}
    return Settings(**{key: value for key, value in overrides.items() if value is not None})


def _exit_after_drain(signum: int, frame: object) -> None:
    _exit_now(EXIT_OK)


def _exit_now(status: int) -> NoReturn:
    """Exit without joining worker threads: a model load may be running (or retrying MLflow) in one."""
    logging.shutdown()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
