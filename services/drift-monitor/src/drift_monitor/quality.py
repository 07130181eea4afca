"""Live model quality: the predictor's ledger joined with the delayed labels, per model version.

Only predictions old enough for their labels to have arrived count (DRIFT_MONITOR_LABEL_DELAY_SECONDS):
the window is (now − delay − window, now − delay]. Each version's errors are compared with its own
yardstick, the `reference_mae` its training run logged (registered version → run → metric): the
winner's MAE on the validation window. Not `test_mae`: the test window is the newest data, where a
shift shows first, so its error may already hold the degradation the check is for (trainer/train.py).

With a shadow model (PREDICTOR_SHADOW_ALIAS) the labelled rows it also scored compare it with the served
version on the same rows. Those figures stand apart: a version's own numbers are its served predictions only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from drift_monitor import ledger
from drift_monitor.config import Settings
from drift_monitor.errors import ConfigurationError, DriftMonitorError, LedgerUnavailable
from drift_monitor.mlflow_health import wait_for_mlflow
from drift_monitor.report import QualityReport, ShadowQuality, VersionQuality

log = logging.getLogger(__name__)

REFERENCE_METRIC = "reference_mae"
"""The trainer's yardstick for live quality, logged on the run the version was registered from."""


@dataclass(frozen=True)
class ReferenceMae:
    value: float | None
    run_id: str | None
    missing: str | None
    """Why there is no value (the version's run or metric is gone); None when there is one."""


def check_quality(settings: Settings, *, now: float | None = None) -> QualityReport:
    """Score every model version with predictions in the window; raises DriftMonitorError when it cannot."""
    if settings.ledger_database_url is None:
        raise ConfigurationError("the quality check needs DRIFT_MONITOR_LEDGER_DATABASE_URL")
    now = now if now is not None else time.time()
    end = now - settings.label_delay_seconds
    start = end - settings.quality_window_seconds
    url = settings.ledger_database_url.get_secret_value()
    errors, last = read_ledger(url, settings.model_name, start, end)
    # Its own short session: read_ledger's (errors, last) is the shape tests/test_contract.py pins.
    shadows = [_shadow_quality(settings, s) for s in read_shadow_errors(url, settings.model_name, start, end)]
    for shadow in shadows:
        log.info(
            shadow.summary(),
            extra={"model_version": shadow.model_version, "shadow_version": shadow.shadow_version},
        )

    references: dict[str, ReferenceMae] = {}
    if errors:
        wait_for_mlflow(settings.mlflow_tracking_uri, settings.mlflow_wait_seconds)
        client = MlflowClient(settings.mlflow_tracking_uri)
        references = {
            e.model_version: reference_mae(client, settings.model_name, e.model_version) for e in errors
        }
    versions = [_version_quality(settings, e, references[e.model_version]) for e in errors]
    return QualityReport(
        checked_at=now,
        finished_at=time.time(),
        window_start=start,
        window_end=end,
        window_seconds=settings.quality_window_seconds,
        label_delay_seconds=settings.label_delay_seconds,
        min_labelled_rows=settings.quality_min_labelled_rows,
        max_mae_ratio=settings.quality_max_mae_ratio,
        labels_missing_after_seconds=settings.labels_missing_after_seconds,
        last_label_at=last.at.timestamp() if last else None,
        last_label_source=last.source if last else None,
        versions=versions,
        shadows=shadows,
    )


def read_ledger(
    url: str, model_name: str, start: float, end: float
) -> tuple[list[ledger.VersionErrors], ledger.LastLabel | None]:
    """One read-only session: the window's errors per version and the last label's time."""
    with _session(url) as conn:
        missing = ledger.missing_tables(conn)
        if missing:
            raise LedgerUnavailable(
                f"the ledger database {ledger.describe(url)} has no {' or '.join(missing)} table: "
                "a predictor with PREDICTOR_LEDGER_DATABASE_URL creates them when it starts"
            )
        return ledger.version_errors(conn, model_name, _utc(start), _utc(end)), ledger.last_label(conn)


def read_shadow_errors(url: str, model_name: str, start: float, end: float) -> list[ledger.ShadowErrors]:
    """The served and shadow versions' errors on the window's labelled rows a shadow also scored.

    A ledger from before revision 0002 has no shadow columns: no shadow rows, not a failed check (the
    predictor adds them when it next starts; the monitor only reads).
    """
    with _session(url) as conn:
        if ledger.missing_tables(conn):
            return []
        missing = ledger.missing_shadow_columns(conn)
        if missing:
            log.info("the ledger predates revision 0002 (no %s): no shadow comparison", ", ".join(missing))
            return []
        return ledger.shadow_errors(conn, model_name, _utc(start), _utc(end))


@contextmanager
def _session(url: str) -> Iterator[sa.Connection]:
    """A read-only connection; any database error becomes one LedgerUnavailable without the password."""
    engine = ledger.connect(url)
    try:
        with engine.connect() as conn:
            yield conn
    except sa.exc.SQLAlchemyError as exc:
        raise LedgerUnavailable(
            f"cannot read the ledger database {ledger.describe(url)}: {_reason(exc)}"
        ) from exc
    finally:
        engine.dispose()


def reference_mae(client: MlflowClient, model_name: str, version: str) -> ReferenceMae:
    """The version's training-run `reference_mae`, or why there is none; a registry error fails the check."""
    try:
        run_id = client.get_model_version(model_name, version).run_id
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return ReferenceMae(None, None, f"{model_name} v{version} is not in the MLflow registry")
        raise DriftMonitorError(
            f"cannot read {model_name} v{version} from the MLflow registry ({exc})"
        ) from exc
    if run_id is None:
        return ReferenceMae(None, None, f"{model_name} v{version} was not registered from a run")
    try:
        metrics = client.get_run(run_id).data.metrics
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return ReferenceMae(None, run_id, f"the training run {run_id} of v{version} no longer exists")
        raise DriftMonitorError(f"cannot read the training run {run_id} of v{version} ({exc})") from exc
    value = metrics.get(REFERENCE_METRIC)
    if value is None:
        return ReferenceMae(
            None, run_id, f"the training run {run_id} of v{version} has no {REFERENCE_METRIC} metric"
        )
    return ReferenceMae(float(value), run_id, None)


def _version_quality(
    settings: Settings, errors: ledger.VersionErrors, reference: ReferenceMae
) -> VersionQuality:
    if reference.missing:
        log.warning(
            "no reference MAE: ModelQualityDegraded cannot judge this version",
            extra={"model_version": errors.model_version, "reason": reference.missing},
        )
    ratio = (
        errors.mae / reference.value
        if errors.mae is not None and reference.value is not None and reference.value > 0
        else None
    )
    enough = errors.labelled_rows >= settings.quality_min_labelled_rows
    return VersionQuality(
        model_name=settings.model_name,
        model_version=errors.model_version,
        ledger_rows=errors.ledger_rows,
        labelled_rows=errors.labelled_rows,
        mae=errors.mae,
        rmse=errors.rmse,
        bias=errors.bias,
        reference_mae=reference.value,
        reference_run_id=reference.run_id,
        reference_missing=reference.missing,
        mae_ratio=ratio,
        enough_labels=enough,
        degraded=ratio > settings.quality_max_mae_ratio if enough and ratio is not None else None,
    )


def _shadow_quality(settings: Settings, errors: ledger.ShadowErrors) -> ShadowQuality:
    return ShadowQuality(
        model_name=settings.model_name,
        model_version=errors.model_version,
        shadow_version=errors.shadow_version,
        labelled_rows=errors.labelled_rows,
        served_mae=errors.served_mae,
        served_rmse=errors.served_rmse,
        served_bias=errors.served_bias,
        shadow_mae=errors.shadow_mae,
        shadow_rmse=errors.shadow_rmse,
        shadow_bias=errors.shadow_bias,
        mae_difference=errors.shadow_mae - errors.served_mae,
        enough_labels=errors.labelled_rows >= settings.quality_min_labelled_rows,
    )


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's own message, first line (psycopg adds hints on the next ones), never the URL."""
    original = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__
