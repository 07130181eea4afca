"""The trainer end to end against a real MLflow server, on the real data (the session `champion`)."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import TrainedModel


@pytest.fixture(scope="module")
def client(champion: TrainedModel) -> MlflowClient:
    mlflow.set_tracking_uri(champion.tracking_uri)
    return MlflowClient(champion.tracking_uri)


def test_cli_prints_outcome_and_promotes_first_model(champion: TrainedModel) -> None:
    outcome = champion.outcome
    assert outcome["promoted"] is True
    assert outcome["version"] == champion.version
    assert outcome["winner"] in {"ridge", "random_forest", "hist_gradient_boosting"}
    assert outcome["test"]["rmse"] < outcome["baseline_test"]["rmse"] / 2


def test_logs_are_json_lines_with_stage_timings(champion: TrainedModel) -> None:
    records = [json.loads(line) for line in champion.logs.splitlines() if line.startswith("{")]
    stages = [r["stage"] for r in records if "stage" in r]
    assert stages[:2] == ["connect to MLflow", "load and validate data"]
    assert "register and gate" in stages
    assert all(isinstance(r["seconds"], float) for r in records if "stage" in r)


def test_alias_points_at_registered_version(client: MlflowClient, champion: TrainedModel) -> None:
    version = client.get_model_version_by_alias("hotel-adr", "champion")
    assert version.version == champion.version
    assert version.tags["promoted"] == "true"
    assert float(version.tags["test_rmse"]) > 0
    assert "Model card" in version.description


def test_parent_run_has_metrics_nested_candidates_and_dataset(
    client: MlflowClient, champion: TrainedModel
) -> None:
    run = client.get_run(champion.run_id)
    for key in ("test_rmse", "test_mae", "test_r2", "baseline_test_rmse", "ridge_val_rmse"):
        assert key in run.data.metrics, key
    assert run.data.params["split_validation_start"] < run.data.params["split_test_start"]
    assert int(run.data.params["rows_train"]) > int(run.data.params["rows_test"]) > 0
    assert run.data.tags["mlflow.source.git.commit"]
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{champion.run_id}'"
    )
    assert sorted(c.data.params["candidate"] for c in children) == [
        "hist_gradient_boosting",
        "random_forest",
        "ridge",
    ]
    assert all("val_rmse" in c.data.metrics for c in children)
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest and inputs[0].dataset.name == "hotel_rates"


def test_reference_artifacts_for_the_drift_monitor(champion: TrainedModel, tmp_path) -> None:
    local = mlflow.artifacts.download_artifacts(
        run_id=champion.run_id, artifact_path="reference", dst_path=tmp_path
    )
    spec = json.loads((tmp_path / "reference" / "feature_spec.json").read_text())
    reference = pd.read_parquet(f"{local}/reference.parquet")
    assert len(reference) == 5000
    assert list(reference.columns) == [*spec["features"], "prediction"]
    assert reference["prediction"].notna().all()
    assert "meal" in spec["categorical"] and "bed_and_breakfast" in spec["categorical"]["meal"]
    assert set(spec["numeric"]) | set(spec["categorical"]) == set(spec["features"])
    card = mlflow.artifacts.load_text(f"runs:/{champion.run_id}/model_card.md")
    assert "Time split" in card and "baseline" in card


def test_registered_model_loads_and_predicts_input_example(champion: TrainedModel) -> None:
    model = mlflow.pyfunc.load_model("models:/hotel-adr@champion")
    example = model.input_example
    predictions = model.predict(example)
    assert len(predictions) == len(example)
    assert ((predictions > 0) & (predictions < 1000)).all()
    inputs = {c.name for c in model.metadata.get_input_schema().inputs}
    assert "arrival_month" in inputs and "arrival_date" not in inputs
