"""Console script `predictor --host H --port P` (also `python -m predictor`): logging, settings, uvicorn.

One worker process: scale with replicas. uvicorn handles SIGTERM gracefully: it stops accepting, lets
in-flight requests finish (up to PREDICTOR_GRACEFUL_SHUTDOWN_SECONDS), then runs the app's shutdown.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal

import uvicorn

from predictor.app import create_app
from predictor.config import Settings
from predictor.logging import configure_logging


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars in JSON logs
    settings = Settings()
    parser = argparse.ArgumentParser(prog="predictor", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host", default=settings.host, help=f"bind address (PREDICTOR_HOST, default {settings.host})"
    )
    parser.add_argument(
        "--port", type=int, default=settings.port, help=f"bind port (PREDICTOR_PORT, default {settings.port})"
    )
    args = parser.parse_args(argv)
    log_config = configure_logging(settings.log_level, settings.log_format)
    # uvicorn drains on SIGTERM, then re-raises the signal to whatever handler was there before it
    # started: with the default one the process dies "terminated by SIGTERM" (143), and Kubernetes
    # shows every pod a scale-down or rollout stopped as Error. A drained shutdown is a clean exit,
    # and an immediate one: sys.exit would wait for model loads still running in worker threads.
    signal.signal(signal.SIGTERM, _exit_after_drain)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=log_config,
        access_log=False,  # RequestContextMiddleware logs each request once, with its request id
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        loop="uvloop",
        http="httptools",
    )


def _exit_after_drain(signum: int, frame: object) -> None:
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
