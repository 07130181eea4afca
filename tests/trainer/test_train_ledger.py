"""Training on what production saw: `trainer.train.train` with a real ledger database (migrated by the
predictor's own code) and an MLflow SQLite store, in process, on a small synthetic table.

The ledger's rows carry a new price level (×1.3) that no feature explains; the retrain must learn it
(the recalibration factor), be judged on the newest rows neither model was fitted on (paired gate),
keep the old champion as `previous`, and take its drift reference from the ledger rows it learned from.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.trainer.tiny_hotel import tiny_hotel_rates
from trainer.config import Settings
from trainer.data import prepare
from trainer.ledger import labelled_rows
from trainer.paired_gate import bootstrap, judge
from trainer.recalibration import LevelRecalibrated, level_factor
from trainer.train import train

MODEL = "hotel-adr"
LEVEL = 1.3
LEDGER_ROWS = 600


@dataclass(frozen=True)
class Registry:
    uri: str
    client: MlflowClient
    dataset: Path
    ledger_url: str
    home: Path

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "MLFLOW_TRACKING_URI": self.uri,
            "dataset": str(self.dataset),
            "candidates": ["hist_gradient_boosting"],
            "min_rows": 100,
            "reference_rows": 100,
            "gate_bootstrap_samples": 500,
        }
        return Settings(**(values | overrides))  # type: ignore[arg-type]


def ledger_rows(n: int, start: datetime, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature rows as the predictor stores them, and their true prices at the new level."""
    s = Settings()
    raw = tiny_hotel_rates(n, seed)
    features = prepare(
        raw, target=s.target, date_column=s.date_column, drop_columns=s.drop_columns, min_rows=10
    )
    return features.X, features.y.to_numpy() * LEVEL


def write_ledger(
    url: str, X: pd.DataFrame, y: np.ndarray, start: datetime, version: str, prefix: str
) -> None:
    from predictor.ledger.store import Label, LedgerStore, create_ledger_engine, migrate

    engine = create_ledger_engine(url)
    migrate(engine)
    store = LedgerStore(engine)
    records = json.loads(X.to_json(orient="records"))  # what the predictor received: JSON values
    rows = [
        {
            "id": f"{prefix}{i:05d}:0",
            "request_id": f"{prefix}{i:05d}",
            "model_name": MODEL,
            "model_version": version,
            "predicted_at": start + timedelta(seconds=i),
            "features": record,
            "prediction": 100.0,
        }
        for i, record in enumerate(records)
    ]
    store.insert_predictions(rows)
    store.store_labels(
        [Label(row["id"], float(actual)) for row, actual in zip(rows, y, strict=True)],
        now=start + timedelta(seconds=len(rows) + 1),
    )
    engine.dispose()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    home: Path = tmp_path_factory.mktemp("train-ledger")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    client.create_experiment("hotel-adr", (home / "artifacts").as_uri())
    dataset = home / "hotel.csv"
    tiny_hotel_rates(800, seed=3).to_csv(dataset, index=False)
    yield Registry(uri, client, dataset, f"sqlite:///{home / 'ledger.db'}", home)
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def first(registry: Registry) -> dict[str, object]:
    """v1 from the dataset alone, then a production month at the new level, labelled."""
    outcome = train(registry.settings()).summary()
    assert outcome["promoted"] is True
    X, y = ledger_rows(LEDGER_ROWS, datetime.now(UTC) - timedelta(days=2), seed=11)
    write_ledger(registry.ledger_url, X, y, datetime.now(UTC) - timedelta(days=2), "1", "early")
    return outcome


@pytest.fixture(scope="module")
def retrained(registry: Registry, first: dict[str, object]) -> dict[str, object]:
    return train(registry.settings(ledger_database_url=registry.ledger_url)).summary()


def test_a_run_without_a_ledger_says_so(first: dict[str, object]) -> None:
    assert first["ledger"] == {
        "used": False,
        "reason": "no ledger (TRAINER_LEDGER_DATABASE_URL unset)",
        "rows": 0,
    }
    assert first["gate"]["kind"] == "test-window"  # type: ignore[index]


def test_the_ledger_rows_are_cut_in_time_order_and_recorded(registry: Registry, retrained: dict) -> None:
    ledger = retrained["ledger"]
    assert ledger["used"] is True and ledger["rows"] == LEDGER_ROWS
    assert (ledger["gate_rows"], ledger["fit_rows"], ledger["calibration_rows"]) == (180, 210, 210)
    rows = labelled_rows(registry.ledger_url, MODEL, datetime.now(UTC) - timedelta(days=30))
    assert ledger["digest"] == rows.digest()
    assert (ledger["from"], ledger["until"]) == rows.time_range()
    learned_until = rows.predicted_at.iloc[LEDGER_ROWS - 180 - 1]  # the last calibration row
    assert pd.Timestamp(ledger["fit_until"]) == learned_until
    tags = registry.client.get_model_version(MODEL, retrained["version"]).tags
    assert tags["ledger_digest"] == rows.digest()
    assert pd.Timestamp(tags["ledger_fit_until"]) == learned_until
    assert tags["ledger_rows"] == str(LEDGER_ROWS)


def test_the_retrain_learns_the_new_level(registry: Registry, retrained: dict) -> None:
    factor = retrained["ledger"]["factor"]
    assert 1.15 < factor < 1.45, factor  # the level is ×1.3; the fit rows moved the trees a little
    model = mlflow.sklearn.load_model(f"models:/{MODEL}/{retrained['version']}")
    assert isinstance(model, LevelRecalibrated) and model.factor == pytest.approx(factor, abs=1e-4)


def test_the_paired_gate_promotes_a_better_challenger(registry: Registry, retrained: dict) -> None:
    gate = retrained["gate"]
    assert gate["kind"] == "paired-recent-labels" and gate["rows"] == 180
    assert gate["challenger_mae"] < gate["champion_mae"] and gate["high"] < 0
    assert gate["diff"] == pytest.approx(gate["challenger_mae"] - gate["champion_mae"], abs=1e-3)
    assert retrained["promoted"] is True
    client = registry.client
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == retrained["version"]
    assert str(client.get_model_version_by_alias(MODEL, "previous").version) == "1"
    tags = client.get_model_version(MODEL, retrained["version"]).tags
    assert tags["gate"] == "paired-recent-labels" and tags["previous_version"] == "1"
    assert float(tags["gate_mae_diff_high"]) == pytest.approx(gate["high"], abs=1e-3)
    assert tags["promoted_at"]


def test_the_paired_gate_numbers_are_the_models_errors_on_the_newest_rows(
    registry: Registry, retrained: dict
) -> None:
    rows = labelled_rows(registry.ledger_url, MODEL, datetime.now(UTC) - timedelta(days=30)).take(
        slice(-180, None)
    )
    from trainer.recent import align

    X = align(rows.features, prepared_columns())
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    challenger = mlflow.pyfunc.load_model(f"models:/{MODEL}/{retrained['version']}")
    assert np.mean(np.abs(rows.actual - champion.predict(X))) == pytest.approx(
        retrained["gate"]["champion_mae"], abs=1e-3
    )
    assert np.mean(np.abs(rows.actual - challenger.predict(X))) == pytest.approx(
        retrained["gate"]["challenger_mae"], abs=1e-3
    )


def prepared_columns() -> pd.DataFrame:
    s = Settings()
    raw = tiny_hotel_rates(50, 3)
    return prepare(
        raw, target=s.target, date_column=s.date_column, drop_columns=s.drop_columns, min_rows=10
    ).X


def test_the_quality_yardstick_is_the_error_on_the_gate_rows(registry: Registry, retrained: dict) -> None:
    """The version's reference_mae (what ModelQualityDegraded compares with) is its MAE on the newest
    held-out rows, in the regime it was retrained for, not on the dataset's validation window."""
    run = registry.client.get_run(retrained["run_id"])
    assert run.data.tags["reference_mae_rows"] == "ledger-gate-rows"
    assert run.data.metrics["reference_mae"] == pytest.approx(retrained["gate"]["challenger_mae"], abs=1e-3)
    first_run = registry.client.get_run(registry.client.get_model_version(MODEL, "1").run_id)
    assert first_run.data.tags["reference_mae_rows"] == "validation"


def test_the_drift_reference_is_what_the_model_learned_the_new_regime_from(
    registry: Registry, retrained: dict
) -> None:
    tags = registry.client.get_model_version(MODEL, retrained["version"]).tags
    assert tags["reference_source"] == "ledger"
    path = mlflow.artifacts.download_artifacts(
        run_id=retrained["run_id"], artifact_path="reference/reference.parquet", tracking_uri=registry.uri
    )
    reference = pd.read_parquet(path)
    assert len(reference) == 100  # reference_rows, sampled from the 420 fit + calibration rows
    rows = labelled_rows(registry.ledger_url, MODEL, datetime.now(UTC) - timedelta(days=30)).take(
        slice(0, 420)
    )
    learned = set(rows.features["lead_time"].astype(int))
    assert set(reference["lead_time"].astype(int)) <= learned


def test_the_registered_model_loads_without_the_trainer(registry: Registry, retrained: dict) -> None:
    """The predictor's image has no trainer package: the recalibration class travels by value."""
    path = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{MODEL}/{retrained['version']}", tracking_uri=registry.uri,
        dst_path=str(registry.home / "downloaded"),
    )  # fmt: skip
    example = prepared_columns().head(3).to_json(orient="split")
    script = (
        "import sys, io; sys.modules['trainer'] = None\n"  # any import of trainer.* now fails
        "import mlflow, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model({path!r})\n"
        f"X = pd.read_json(io.StringIO({example!r}), orient='split')\n"
        "print(len(model.predict(X)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "3"


def test_a_challenger_short_of_the_required_margin_is_refused(registry: Registry, retrained: dict) -> None:
    champion = registry.client.get_model_version_by_alias(MODEL, "champion").version
    outcome = train(
        registry.settings(ledger_database_url=registry.ledger_url, gate_min_improvement=1000)
    ).summary()
    assert outcome["promoted"] is False and outcome["gate"]["kind"] == "paired-recent-labels"
    assert "not entirely below −1000" in outcome["reason"]
    assert registry.client.get_model_version_by_alias(MODEL, "champion").version == champion
    # v2 was fitted up to its calibration rows: only the newest 180 rows judge v3 against it.
    assert outcome["gate"]["rows"] == 180


def test_too_few_labelled_rows_fall_back_to_the_test_window(registry: Registry, retrained: dict) -> None:
    outcome = train(
        registry.settings(ledger_database_url=registry.ledger_url, ledger_min_rows=10_000)
    ).summary()
    assert outcome["ledger"]["used"] is False
    assert (
        outcome["ledger"]["reason"]
        == f"{LEDGER_ROWS} labelled rows in the last 28 days (< TRAINER_LEDGER_MIN_ROWS=10000)"
    )
    assert outcome["gate"]["kind"] == "test-window"


def test_a_ledger_without_tables_is_not_used_and_the_run_goes_on(registry: Registry, tmp_path: Path) -> None:
    import sqlite3

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    outcome = train(registry.settings(ledger_database_url=f"sqlite:///{empty}")).summary()
    assert outcome["ledger"]["used"] is False
    assert "has no predictions or labels table" in outcome["ledger"]["reason"]


# ---------------------------------------------------------------- the rules, pure


def test_level_factor_is_the_ratio_of_sums_and_bounded() -> None:
    assert level_factor(np.array([110.0, 220.0]), np.array([100.0, 200.0])) == pytest.approx(1.1)
    assert level_factor(np.array([1000.0]), np.array([100.0])) == 2.0
    assert level_factor(np.array([]), np.array([])) == 1.0


def test_bootstrap_pairs_the_rows() -> None:
    rng = np.random.default_rng(0)
    hard = rng.uniform(0, 50, 300)  # per-row difficulty shared by both models
    comparison = bootstrap(hard + 5, hard + 4, samples=1000, seed=1)
    assert comparison.diff == pytest.approx(-1.0)
    # Paired, the shared difficulty cancels: the interval is a point; unpaired it would be several units wide.
    assert comparison.low == pytest.approx(-1.0) and comparison.high == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("shift", "promoted"), [(-3.0, True), (0.0, False), (3.0, False)], ids=["better", "same", "worse"]
)
def test_judge_promotes_only_a_clearly_better_challenger(shift: float, promoted: bool) -> None:
    rng = np.random.default_rng(2)
    champion_errors = rng.normal(0, 20, 400)
    challenger_errors = champion_errors + rng.normal(0, 2, 400) + np.sign(champion_errors) * shift
    decision = judge(bootstrap(champion_errors, challenger_errors, 1000, 0), "4", 0.0)
    assert decision.promoted is promoted
    assert decision.kind == "paired-recent-labels" and decision.champion_version == "4"
