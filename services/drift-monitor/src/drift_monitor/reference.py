"""The reference a model version's samples are compared with, as the trainer logged it in MLflow.

Registered model version → its run (the trainer's parent run) → `reference/reference.parquet` (rows the
model was fitted on, plus the model's `prediction` for each) and `reference/feature_spec.json` (which
features are numeric, which are categorical and with which categories). See docs/interfaces.md.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from drift_monitor.errors import DriftMonitorError, ReferenceNotFound

log = logging.getLogger(__name__)

REFERENCE_DIR = "reference"
REFERENCE_FILE = "reference.parquet"
FEATURE_SPEC_FILE = "feature_spec.json"
PREDICTION_COLUMN = "prediction"


@dataclass(frozen=True)
class FeatureSpec:
    """The trainer's `feature_spec.json`: which inputs are numbers and which are categories (and which ones).

    The contract between the trainer and the drift monitor: the encoding follows it, not the samples.
    """

    features: list[str]
    """Every model input, in signature order."""
    numeric: list[str]
    categorical: dict[str, list[str]]
    """Categorical feature → its known categories (sorted); the encoding's source of truth."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        try:
            return cls(
                features=list(data["features"]),
                numeric=list(data["numeric"]),
                categorical=dict(data["categorical"]),
            )
        except (KeyError, TypeError) as exc:
            raise DriftMonitorError(
                f"{FEATURE_SPEC_FILE} lacks features/numeric/categorical ({exc})"
            ) from exc


@dataclass(frozen=True)
class Reference:
    """What one model version's samples are compared with: the training rows and predictions the trainer logged."""

    model_name: str
    model_version: str
    run_id: str
    features: pd.DataFrame
    """Reference feature rows, columns in `spec.features` order."""
    predictions: pd.Series
    spec: FeatureSpec


def load_reference(client: MlflowClient, model_name: str, model_version: str) -> Reference:
    try:
        run_id = client.get_model_version(model_name, model_version).run_id
    except MlflowException as exc:
        raise ReferenceNotFound(
            f"model version {model_name} v{model_version} is not in the MLflow registry ({exc.error_code})"
        ) from exc
    if run_id is None:
        raise ReferenceNotFound(
            f"no reference artifacts for {model_name} v{model_version}: it was not logged from a run"
        )
    with tempfile.TemporaryDirectory(prefix="drift-reference-") as tmp:
        try:
            local = Path(client.download_artifacts(run_id, REFERENCE_DIR, dst_path=tmp))
            frame = pd.read_parquet(local / REFERENCE_FILE, engine="fastparquet")
            spec = FeatureSpec.from_json(json.loads((local / FEATURE_SPEC_FILE).read_text()))
        except (MlflowException, OSError) as exc:
            raise ReferenceNotFound(
                f"no reference artifacts for {model_name} v{model_version}: run {run_id} lacks "
                f"{REFERENCE_DIR}/{REFERENCE_FILE} and {REFERENCE_DIR}/{FEATURE_SPEC_FILE} (retrain it with the current trainer)"
            ) from exc
    missing = [c for c in [*spec.features, PREDICTION_COLUMN] if c not in frame.columns]
    if missing:
        raise DriftMonitorError(f"reference of {model_name} v{model_version} lacks column(s) {missing}")
    log.info(
        "loaded reference",
        extra={
            "model_name": model_name,
            "model_version": model_version,
            "run_id": run_id,
            "rows": len(frame),
        },
    )
    return Reference(
        model_name=model_name,
        model_version=model_version,
        run_id=run_id,
        features=frame[spec.features],
        predictions=frame[PREDICTION_COLUMN].astype("float64"),
        spec=spec,
    )
