"""A shadow version against the served one (PREDICTOR_SHADOW_ALIAS, ledger revision 0002), on a real ledger
(SQLite and the real PostgreSQL) written by the predictor's own migrations and store: both versions' errors
on exactly the labelled rows the shadow also scored, the served versions' own figures untouched, nothing
without shadow rows or on a ledger from before revision 0002, and the series on a real Pushgateway and the
runs in the real MLflow server."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources

import httpx
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from drift_monitor import ledger
from drift_monitor.metrics import quality_registry
from drift_monitor.push import JOB, QUALITY_JOB, push_quality
from drift_monitor.quality import check_quality, read_ledger, read_shadow_errors
from drift_monitor.report import ShadowQuality
from drift_monitor.tracking import record_quality
from scripts import local_stack as stack
from tests.drift_monitor.conftest import QUALITY_MODEL, LedgerRows, QualityModel, prediction
from tests.drift_monitor.test_push import run_report
from tests.drift_monitor.test_quality import DAY, HOUR, NOW, settings
from tests.drift_monitor.test_quality_push import pushed, quality_report, version_quality

SHADOW_METRICS = {
    "model_quality_shadow_labelled_rows",
    "model_quality_shadow_mae",
    "model_quality_shadow_rmse",
    "model_quality_shadow_bias",
    "model_quality_shadow_served_mae",
    "model_quality_shadow_served_rmse",
    "model_quality_shadow_served_bias",
}


def shadowed(row: dict, *, shadow_version: str | None, shadow: float | None) -> dict:
    """A predictions row as a predictor with PREDICTOR_SHADOW_ALIAS writes it (None: no shadow scored it)."""
    return {**row, "model_alias": "champion", "shadow_version": shadow_version, "shadow_prediction": shadow}


def fill_pairs(rows: LedgerRows, served: str = "2", other: str = "1") -> None:
    """Served v2 with shadow v3 on four labelled rows (actual 100 each):
    served errors +10 −10 +20 0 (MAE 10, bias 5, RMSE √150), shadow errors +4 −2 0 +2 (MAE 2, bias 1, RMSE √6).
    Around them, rows that must not count: unlabelled, unshadowed, outside the window, another model's.
    Served v1 with shadow v3 on one labelled row: its own pair."""
    at = NOW - 2 * HOUR
    rows.predict(
        *(
            shadowed(prediction(f"pair:{i}", version=served, at=at, value=p), shadow_version="3", shadow=s)
            for i, (p, s) in enumerate(((110.0, 104.0), (90.0, 98.0), (120.0, 100.0), (100.0, 102.0)))
        ),
        shadowed(
            prediction("unlabelled:0", version=served, at=at, value=100.0), shadow_version="3", shadow=0.0
        ),
        shadowed(
            prediction("no-shadow:0", version=served, at=at, value=150.0), shadow_version=None, shadow=None
        ),
        shadowed(
            prediction("too-old:0", version=served, at=NOW - 9 * DAY, value=1.0),
            shadow_version="3",
            shadow=0.0,
        ),
        shadowed(
            prediction("other-model:0", version=served, at=at, value=1.0, model_name="other"),
            shadow_version="3",
            shadow=0.0,
        ),
        shadowed(prediction("v1:0", version=other, at=at, value=130.0), shadow_version="3", shadow=95.0),
    )
    for pid in ("pair:0", "pair:1", "pair:2", "pair:3", "no-shadow:0", "too-old:0", "other-model:0", "v1:0"):
        rows.label(pid, 100.0, received_at=NOW - 60)


def test_both_versions_are_scored_on_the_same_labelled_rows(ledger_rows: LedgerRows) -> None:
    fill_pairs(ledger_rows)

    got = read_shadow_errors(ledger_rows.url, QUALITY_MODEL, NOW - 7 * DAY, NOW)

    assert got == [
        ledger.ShadowErrors(
            "1", "3", labelled_rows=1, served_mae=30.0, served_rmse=30.0, served_bias=30.0,
            shadow_mae=5.0, shadow_rmse=5.0, shadow_bias=-5.0,
        ),
        ledger.ShadowErrors(
            "2", "3", labelled_rows=4, served_mae=10.0, served_rmse=pytest.approx(math.sqrt(150)),
            served_bias=5.0, shadow_mae=2.0, shadow_rmse=pytest.approx(math.sqrt(6)), shadow_bias=1.0,
        ),
    ]  # fmt: skip


def test_shadow_predictions_leave_the_served_versions_figures_alone(ledger_rows: LedgerRows) -> None:
    fill_pairs(ledger_rows)

    errors, _ = read_ledger(ledger_rows.url, QUALITY_MODEL, NOW - 7 * DAY, NOW)

    # v2's served predictions only: the four paired rows and the unshadowed one (+50), one unlabelled.
    assert errors == [
        ledger.VersionErrors("1", ledger_rows=1, labelled_rows=1, mae=30.0, rmse=30.0, bias=30.0),
        ledger.VersionErrors(
            "2", ledger_rows=6, labelled_rows=5, mae=18.0, rmse=math.sqrt(3100 / 5), bias=14.0
        ),
    ]


def test_check_quality_reports_and_logs_each_pair(
    ledger_rows: LedgerRows, quality_model: QualityModel, caplog: pytest.LogCaptureFixture
) -> None:
    fill_pairs(ledger_rows, served=quality_model.version, other=quality_model.version_without_metric)
    caplog.set_level(logging.INFO, logger="drift_monitor.quality")

    report = check_quality(
        settings(ledger_rows.url, quality_model.tracking_uri, quality_min_labelled_rows=4), now=NOW
    )

    v, v1 = quality_model.version, quality_model.version_without_metric
    by_served = {s.model_version: s for s in report.shadows}
    assert sorted(by_served) == sorted([v, v1])
    assert by_served[v] == ShadowQuality(
        QUALITY_MODEL, v, "3", labelled_rows=4,
        served_mae=10.0, served_rmse=pytest.approx(math.sqrt(150)), served_bias=5.0,
        shadow_mae=2.0, shadow_rmse=pytest.approx(math.sqrt(6)), shadow_bias=1.0,
        mae_difference=-8.0, enough_labels=True,
    )  # fmt: skip
    assert (by_served[v1].mae_difference, by_served[v1].enough_labels) == (-25.0, False)
    assert {q.model_version: q.mae for q in report.versions} == {v: 18.0, v1: 30.0}  # served only
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("shadow ")]
    assert f"shadow v3 vs served v{v} on 4 labelled rows: MAE 2.00 vs 10.00 (-8.00)" in lines
    assert f"shadow v3 vs served v{v1} on 1 labelled rows: MAE 5.00 vs 30.00 (-25.00)" in lines

    quality = json.loads(replace(run_report(), quality=report).to_json())["quality"]
    assert {(s["model_version"], s["shadow_version"], s["mae_difference"]) for s in quality["shadows"]} == {
        (v, "3", -8.0),
        (v1, "3", -25.0),
    }


def test_no_shadow_rows_is_no_shadow_section(
    ledger_rows: LedgerRows, quality_model: QualityModel, caplog: pytest.LogCaptureFixture
) -> None:
    ledger_rows.predict(prediction("a:0", version=quality_model.version, at=NOW - HOUR, value=110.0))
    ledger_rows.label("a:0", 100.0, received_at=NOW)
    caplog.set_level(logging.INFO, logger="drift_monitor.quality")

    report = check_quality(settings(ledger_rows.url, quality_model.tracking_uri), now=NOW)

    assert report.shadows == [] and [q.mae for q in report.versions] == [10.0]
    assert not [r for r in caplog.records if "shadow" in r.getMessage()]
    series = {s.name for family in quality_registry(report).collect() for s in family.samples}
    assert not series & SHADOW_METRICS


def migrated_to_0001(url: str) -> sa.Engine:
    """A ledger as a predictor from before revision 0002 left it: no shadow columns."""
    from alembic import command
    from alembic.config import Config

    from predictor.ledger.store import create_ledger_engine

    engine = create_ledger_engine(url)
    config = Config()
    config.set_main_option("script_location", str(resources.files("predictor.ledger") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def old_ledger_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old-ledger.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    from predictor.ledger.store import Label, LedgerStore

    engine = migrated_to_0001(url)
    store = LedgerStore(engine)  # writes only the columns it is given: the old schema takes the row
    store.insert_predictions([prediction("a:0", version="1", at=NOW - HOUR, value=110.0)])
    store.store_labels([Label("a:0", 100.0)], now=datetime.fromtimestamp(NOW, UTC))
    engine.dispose()
    return url


def test_a_ledger_before_revision_0002_has_no_shadow_rows(
    old_ledger_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drift_monitor.quality")

    assert read_shadow_errors(old_ledger_url, QUALITY_MODEL, NOW - DAY, NOW) == []

    errors, _ = read_ledger(old_ledger_url, QUALITY_MODEL, NOW - DAY, NOW)
    assert errors == [
        ledger.VersionErrors("1", ledger_rows=1, labelled_rows=1, mae=10.0, rmse=10.0, bias=10.0)
    ]
    assert "predates revision 0002 (no shadow_version, shadow_prediction)" in caplog.text


# ---------------------------------------------------------------- the series and the MLflow runs

SHADOW_V3_OF_V2 = (("model_name", "hotel-adr"), ("model_version", "2"), ("shadow_version", "3"))


def shadow_quality(served: str, shadow: str, *, served_mae: float, shadow_mae: float) -> ShadowQuality:
    return ShadowQuality(
        model_name="hotel-adr",
        model_version=served,
        shadow_version=shadow,
        labelled_rows=412,
        served_mae=served_mae,
        served_rmse=served_mae * 1.5,
        served_bias=-1.0,
        shadow_mae=shadow_mae,
        shadow_rmse=shadow_mae * 1.5,
        shadow_bias=0.5,
        mae_difference=shadow_mae - served_mae,
        enough_labels=True,
    )


@pytest.fixture
def gateway(pushgateway: stack.Process) -> stack.Process:
    for job in (JOB, QUALITY_JOB):
        httpx.delete(f"{pushgateway.url}/metrics/job/{job}", timeout=5).raise_for_status()
    return pushgateway


def test_pairs_are_pushed_with_the_quality_series_and_leave_with_them(gateway: stack.Process) -> None:
    served = version_quality("2", mae=20.0)
    pair = shadow_quality("2", "3", served_mae=16.0, shadow_mae=12.0)

    push_quality(gateway.url, replace(quality_report(served), shadows=[pair]))

    metrics = pushed(gateway, QUALITY_JOB)
    assert {key: value for key, value in metrics.items() if key[0] in SHADOW_METRICS} == {
        ("model_quality_shadow_labelled_rows", SHADOW_V3_OF_V2): 412,
        ("model_quality_shadow_mae", SHADOW_V3_OF_V2): 12.0,
        ("model_quality_shadow_rmse", SHADOW_V3_OF_V2): 18.0,
        ("model_quality_shadow_bias", SHADOW_V3_OF_V2): 0.5,
        ("model_quality_shadow_served_mae", SHADOW_V3_OF_V2): 16.0,
        ("model_quality_shadow_served_rmse", SHADOW_V3_OF_V2): 24.0,
        ("model_quality_shadow_served_bias", SHADOW_V3_OF_V2): -1.0,
    }
    assert metrics[("model_quality_mae", SHADOW_V3_OF_V2[:2])] == 20.0  # the version's own, unchanged

    push_quality(gateway.url, quality_report(served))  # the shadow was switched off

    assert not [key for key in pushed(gateway, QUALITY_JOB) if key[0] in SHADOW_METRICS]


def test_pairs_are_recorded_on_the_served_versions_quality_run(quality_model: QualityModel) -> None:
    experiment = "quality-shadow-tests"
    report = replace(
        quality_report(version_quality("2", mae=20.0), version_quality("4", mae=30.0)),
        shadows=[shadow_quality("2", "3", served_mae=16.0, shadow_mae=12.0)],
    )
    client = MlflowClient(quality_model.tracking_uri)

    record_quality(client, experiment, report)

    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = {r.data.tags["model_version"]: r for r in client.search_runs([experiment_id])}
    assert {k: v for k, v in runs["2"].data.metrics.items() if k.startswith("shadow_")} == {
        "shadow_labelled_rows.v3": 412.0,
        "shadow_mae.v3": 12.0,
        "shadow_rmse.v3": 18.0,
        "shadow_bias.v3": 0.5,
        "shadow_served_mae.v3": 16.0,
        "shadow_served_rmse.v3": 24.0,
        "shadow_served_bias.v3": -1.0,
        "shadow_mae_difference.v3": -4.0,
    }
    assert runs["2"].data.metrics["mae"] == 20.0  # the served version's own figures stay as they were
    assert not [k for k in runs["4"].data.metrics if k.startswith("shadow_")]
