"""Rolling back a promotion (trainer.rollback): by hand, and the automatic check on live labels, with
in-process MLflow on a SQLite store in a temp folder and a real ledger written by the predictor's own
code (SQLite, and once the session's real PostgreSQL). `trainer rollback` runs as the console script.

Each test works on a registered model of its own; the verdicts' numbers are recomputed with numpy from
the rows the test wrote.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature
from numpy.typing import NDArray
from sklearn.dummy import DummyRegressor

from scripts import local_stack as stack
from tests.trainer.test_ledger_reader import Ledger, empty_sqlite, prediction
from trainer.config import Settings
from trainer.errors import TrainerError
from trainer.gate import PREVIOUS_ALIAS, ROLLBACK_CHECK_TAG, iso_utc, promote
from trainer.ledger import LedgerUnavailable
from trainer.rollback import AliasesMoved, auto_rollback, rollback

ALIAS = "champion"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
PROMOTED_AT = NOW - timedelta(hours=6)
"""When v2 became champion (v1 is `previous`)."""
WINDOW = timedelta(days=1)
"""TRAINER_ROLLBACK_WINDOW_SECONDS in these tests: v1's baseline is [PROMOTED_AT - WINDOW, PROMOTED_AT)."""


@dataclass(frozen=True)
class Registry:
    uri: str
    client: MlflowClient
    model_uri: str
    """One logged DummyRegressor; every version registered in these tests points at it."""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    home: Path = tmp_path_factory.mktemp("rollback-mlflow")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    mlflow.set_experiment(experiment_id=client.create_experiment("rollback", (home / "artifacts").as_uri()))
    X = pd.DataFrame({"lead_time": [1.0, 2.0, 3.0]})
    model = DummyRegressor(strategy="constant", constant=100.0).fit(X, [100.0] * 3)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(X, model.predict(X)),
                                        serialization_format="cloudpickle")  # fmt: skip
    yield Registry(uri, client, info.model_uri)
    mlflow.set_tracking_uri(previous)


def new_model(registry: Registry, versions: int = 2) -> str:
    """A registered model of its own with `versions` versions, none promoted."""
    name = f"rollback-{uuid.uuid4().hex[:8]}"
    for _ in range(versions):
        mlflow.register_model(registry.model_uri, name)
    return name


def promoted_twice(registry: Registry, promoted_at: datetime = PROMOTED_AT) -> str:
    """v1 champion since a month before, then v2 promoted at `promoted_at`: v1 is `previous`."""
    name = new_model(registry)
    assert promote(registry.client, name, ALIAS, "1", now=promoted_at - timedelta(days=30)) is None
    assert promote(registry.client, name, ALIAS, "2", now=promoted_at) == "1"
    return name


def aliases(registry: Registry, name: str) -> dict[str, str]:
    """Alias → version, as strings (the SQL store answers ints, the REST store strings)."""
    return {
        alias: str(version) for alias, version in registry.client.get_registered_model(name).aliases.items()
    }


def tags(registry: Registry, name: str, version: str) -> dict[str, str]:
    return dict(registry.client.get_model_version(name, version).tags)


def settings(registry: Registry, name: str, ledger_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mlflow_tracking_uri": registry.uri,
        "model_name": name,
        "champion_alias": ALIAS,
        "ledger_database_url": ledger_url,
        "rollback_min_labels": 20,
        "rollback_margin": 0.05,
        "rollback_window_seconds": WINDOW.total_seconds(),
        "label_delay_seconds": 0,
        "mlflow_wait_seconds": 0,
    }
    return Settings(**{**values, **overrides})


# ---------------------------------------------------------------- live rows in the ledger


def spread(start: datetime, end: datetime, n: int) -> list[datetime]:
    """n instants in [start, end), whole seconds."""
    if n == 0:
        return []
    step = (end - start) / n
    return [start + timedelta(seconds=int((step * k).total_seconds())) for k in range(n)]


def write_live_rows(
    ledger: Ledger,
    name: str,
    *,
    previous_errors: NDArray[np.float64],
    new_errors: NDArray[np.float64],
    immature_errors: NDArray[np.float64] | None = None,
    now: datetime = NOW,
    promoted_at: datetime = PROMOTED_AT,
    seed: int = 0,
) -> None:
    """v1's baseline before the promotion and v2's predictions after it, with these absolute errors, and
    rows the check must leave out: v1 before the window and after the promotion, unlabelled v2 rows,
    another model's rows under the same version numbers, and (`immature_errors`) v2 rows labelled only 5
    minutes before `now`."""
    rng = np.random.default_rng(seed)
    counter = iter(range(10_000))

    def row(
        version: str,
        at: datetime,
        error: float | None,
        received_at: datetime | None = None,
        model_name: str = name,
    ) -> None:
        pid = f"{version}-{next(counter)}:0"
        actual = float(rng.uniform(50, 200))
        value = actual + float(rng.choice([-1, 1])) * (error or 0.0)
        ledger.predict(prediction(pid, at=at, value=value, version=version, model_name=model_name))
        if error is not None:
            ledger.label(pid, actual, received_at=received_at or at + timedelta(minutes=20))

    def rows(version: str, errors: NDArray[np.float64], start: datetime, end: datetime, **kw: Any) -> None:
        for at, error in zip(spread(start, end, len(errors)), errors, strict=True):
            row(version, at, float(error), **kw)

    baseline_start = promoted_at - WINDOW
    rows("1", previous_errors, baseline_start, promoted_at - timedelta(hours=1))
    rows("2", new_errors, promoted_at, now - timedelta(hours=1))
    rows("1", np.full(5, 500.0), baseline_start - timedelta(days=3), baseline_start)  # before the window
    for at in spread(promoted_at, now - timedelta(hours=1), 5):
        row("1", at, 0.0)  # a replica still on v1 after the switch: not v1's baseline
        row("2", at, None)  # no label yet
        row("1", at, 500.0, model_name=f"{name}-other")
        row("2", at, 500.0, model_name=f"{name}-other")
    if immature_errors is not None:
        late = now - timedelta(minutes=5)
        rows("2", immature_errors, now - timedelta(minutes=50), now - timedelta(minutes=10), received_at=late)


def numpy_mae(
    ledger: Ledger, name: str, version: str, start: datetime, end: datetime, labelled_by: datetime
) -> tuple[float, int]:
    frame = ledger.frame()
    keep = (
        (frame["model_name"] == name)
        & (frame["model_version"] == version)
        & (frame["predicted_at"] >= start)
        & (frame["predicted_at"] < end)
        & (frame["received_at"] <= labelled_by)
    )
    errors = np.abs(frame.loc[keep, "prediction"].to_numpy() - frame.loc[keep, "actual"].to_numpy())
    return float(np.mean(errors)), int(keep.sum())


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(empty_sqlite(tmp_path / "ledger.db"))
    yield ledger
    ledger.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def any_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = empty_sqlite(tmp_path / "ledger.db")
    else:
        server: stack.PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
    ledger = Ledger(url)
    yield ledger
    ledger.close()


# ---------------------------------------------------------------- promote (gate.promote) and rollback by hand


def test_promote_keeps_the_old_champion_under_previous(registry: Registry) -> None:
    name = promoted_twice(registry)
    assert aliases(registry, name) == {ALIAS: "2", PREVIOUS_ALIAS: "1"}
    new = tags(registry, name, "2")
    assert new["promoted"] == "true" and new["previous_version"] == "1"
    assert new["promoted_at"] == PROMOTED_AT.isoformat()
    assert "previous_version" not in tags(registry, name, "1")
    # A new term is a new check: promoting a version that was judged before clears the verdict.
    registry.client.set_model_version_tag(name, "1", ROLLBACK_CHECK_TAG, "kept")
    assert promote(registry.client, name, ALIAS, "1", now=NOW) == "2"
    assert aliases(registry, name) == {ALIAS: "1", PREVIOUS_ALIAS: "2"}
    assert ROLLBACK_CHECK_TAG not in tags(registry, name, "1")


def test_rollback_by_hand_moves_the_alias_back_and_tags_the_demoted_version(registry: Registry) -> None:
    name = promoted_twice(registry)
    outcome = rollback(registry.client, name, ALIAS, "bookings look wrong", now=NOW)
    assert outcome.summary() == {
        "model": name,
        "from_version": "2",
        "to_version": "1",
        "reason": "bookings look wrong",
    }
    assert aliases(registry, name) == {ALIAS: "1"}  # `previous` is gone: one step back, no ping-pong
    demoted = tags(registry, name, "2")
    assert (demoted["rolled_back"], demoted["rollback_reason"], demoted["promoted"]) == (
        "true",
        "bookings look wrong",
        "false",
    )
    assert tags(registry, name, "1")["promoted_at"] == iso_utc(NOW)
    with pytest.raises(TrainerError, match="nothing to roll back to"):
        rollback(registry.client, name, ALIAS, "again", now=NOW)
    assert aliases(registry, name) == {ALIAS: "1"}


def test_rollback_without_previous_is_an_error_and_changes_nothing(registry: Registry) -> None:
    name = new_model(registry)
    promote(registry.client, name, ALIAS, "1", now=PROMOTED_AT)
    with pytest.raises(TrainerError) as error:
        rollback(registry.client, name, ALIAS, "why not", now=NOW)
    assert str(error.value) == (
        f"model {name!r} has no 'previous' alias: nothing to roll back to "
        "(use `trainer promote --version N` to choose a version)"
    )
    assert aliases(registry, name) == {ALIAS: "1"}
    assert "rolled_back" not in tags(registry, name, "1")


def test_a_rollback_decided_on_other_aliases_changes_nothing(registry: Registry) -> None:
    """The automatic check decides on (champion, previous) = (v2, v1); a retrain promoting v3 meanwhile
    makes (v3, v2): rolling back then would restore v2, the version judged worse. It refuses instead."""
    name = promoted_twice(registry)
    mlflow.register_model(registry.model_uri, name)
    assert promote(registry.client, name, ALIAS, "3", now=NOW) == "2"
    with pytest.raises(AliasesMoved, match="not v2 and v1"):
        rollback(registry.client, name, ALIAS, "v2 worse than v1", now=NOW, expected=("2", "1"))
    assert aliases(registry, name) == {ALIAS: "3", PREVIOUS_ALIAS: "2"}
    assert "rolled_back" not in tags(registry, name, "3")


# ---------------------------------------------------------------- the automatic check


def test_auto_rollback_rolls_back_a_champion_worse_than_its_predecessor(
    registry: Registry, any_ledger: Ledger
) -> None:
    name = promoted_twice(registry)
    rng = np.random.default_rng(3)
    write_live_rows(
        any_ledger, name, previous_errors=rng.uniform(5, 15, 40), new_errors=rng.uniform(5, 15, 30) * 2
    )
    new_mae, rows = numpy_mae(any_ledger, name, "2", PROMOTED_AT, NOW, NOW)
    previous_mae, previous_rows = numpy_mae(any_ledger, name, "1", PROMOTED_AT - WINDOW, PROMOTED_AT, NOW)
    assert (rows, previous_rows) == (30, 40)
    assert new_mae > previous_mae * 1.05

    verdict = auto_rollback(settings(registry, name, any_ledger.url), now=NOW)

    assert (verdict.action, verdict.model_name, verdict.from_version, verdict.to_version) == (
        "rolled_back",
        name,
        "2",
        "1",
    )
    assert verdict.new_mae == pytest.approx(new_mae, rel=1e-9)
    assert verdict.previous_mae == pytest.approx(previous_mae, rel=1e-9)
    assert verdict.labelled_rows == 30
    assert verdict.reason == (
        f"live MAE of v2 {new_mae:.3f} (30 labels since promotion) > previous v1 {previous_mae:.3f} "
        "(40 labels) × (1 + 0.05)"
    )
    assert aliases(registry, name) == {ALIAS: "1"}
    demoted = tags(registry, name, "2")
    assert demoted["rolled_back"] == "true" and demoted["promoted"] == "false"
    assert demoted["rollback_reason"] == verdict.reason
    assert demoted[ROLLBACK_CHECK_TAG] == "rolled_back"
    assert tags(registry, name, "1")["promoted_at"] == iso_utc(NOW)

    again = auto_rollback(settings(registry, name, any_ledger.url), now=NOW + timedelta(hours=1))
    assert (again.action, again.reason) == ("skipped", "no 'previous' version to compare with")
    assert aliases(registry, name) == {ALIAS: "1"}


def test_auto_rollback_keeps_a_champion_within_the_margin(registry: Registry, ledger: Ledger) -> None:
    """10.4 against 10.0 is worse, but not by more than 5 %."""
    name = promoted_twice(registry)
    write_live_rows(ledger, name, previous_errors=np.full(40, 10.0), new_errors=np.full(25, 10.4))

    verdict = auto_rollback(settings(registry, name, ledger.url), now=NOW)

    assert (verdict.action, verdict.from_version, verdict.to_version, verdict.labelled_rows) == (
        "kept",
        "2",
        "1",
        25,
    )
    assert verdict.new_mae == pytest.approx(10.4) and verdict.previous_mae == pytest.approx(10.0)
    assert verdict.reason == (
        "live MAE of v2 10.400 (25 labels since promotion) <= previous v1 10.000 (40 labels) × (1 + 0.05)"
    )
    assert aliases(registry, name) == {ALIAS: "2", PREVIOUS_ALIAS: "1"}
    assert tags(registry, name, "2")[ROLLBACK_CHECK_TAG] == "kept"
    assert "rolled_back" not in tags(registry, name, "2")

    strict = settings(registry, name, ledger.url, rollback_margin=0.0)  # judged once: no second verdict
    again = auto_rollback(strict, now=NOW + timedelta(hours=1))
    assert (again.action, again.reason) == ("skipped", "already checked: kept")
    assert aliases(registry, name) == {ALIAS: "2", PREVIOUS_ALIAS: "1"}


def test_auto_rollback_counts_only_matured_labels(registry: Registry, ledger: Ledger) -> None:
    """Labels received less than TRAINER_LABEL_DELAY_SECONDS ago are not counted: with them there would be
    enough (25 of 20), without them the check waits; once they have matured they count, errors and all."""
    name = promoted_twice(registry)
    rng = np.random.default_rng(5)
    write_live_rows(
        ledger,
        name,
        previous_errors=rng.uniform(5, 15, 40),
        new_errors=rng.uniform(5, 15, 15),
        immature_errors=np.full(10, 60.0),
    )
    delayed = settings(registry, name, ledger.url, label_delay_seconds=600)

    waiting = auto_rollback(delayed, now=NOW)
    matured_mae, matured_rows = numpy_mae(ledger, name, "2", PROMOTED_AT, NOW, NOW - timedelta(minutes=10))
    assert (waiting.action, waiting.labelled_rows, matured_rows) == ("waiting", 15, 15)
    assert waiting.reason == "15 of 20 matured labels for v2 since its promotion"
    assert waiting.new_mae == pytest.approx(matured_mae, rel=1e-9) and waiting.previous_mae is None
    assert aliases(registry, name) == {ALIAS: "2", PREVIOUS_ALIAS: "1"}
    assert ROLLBACK_CHECK_TAG not in tags(registry, name, "2")

    later = NOW + timedelta(minutes=10)  # the last labels are now 15 minutes old
    judged = auto_rollback(delayed, now=later)
    new_mae, rows = numpy_mae(ledger, name, "2", PROMOTED_AT, later, later - timedelta(minutes=10))
    previous_mae, _ = numpy_mae(ledger, name, "1", PROMOTED_AT - WINDOW, PROMOTED_AT, later)
    assert (judged.action, judged.labelled_rows, rows) == ("rolled_back", 25, 25)
    assert judged.new_mae == pytest.approx(new_mae, rel=1e-9)
    assert judged.previous_mae == pytest.approx(previous_mae, rel=1e-9)
    assert aliases(registry, name) == {ALIAS: "1"}


def test_auto_rollback_skips_what_it_cannot_judge(registry: Registry, ledger: Ledger) -> None:
    unpromoted = new_model(registry, versions=1)
    single = new_model(registry, versions=1)
    promote(registry.client, single, ALIAS, "1", now=PROMOTED_AT)
    no_baseline = promoted_twice(registry)  # v2 has labels, v1 never served before the switch
    write_live_rows(ledger, no_baseline, previous_errors=np.array([]), new_errors=np.full(20, 5.0))
    bad_time = promoted_twice(registry)
    registry.client.set_model_version_tag(bad_time, "2", "promoted_at", "last tuesday")

    def check(name: str, url: str | None = ledger.url) -> tuple[str, str]:
        verdict = auto_rollback(settings(registry, name, url), now=NOW)
        return verdict.action, verdict.reason

    assert check(no_baseline, None) == ("skipped", "no ledger (TRAINER_LEDGER_DATABASE_URL unset)")
    assert check(unpromoted) == ("skipped", "no model holds alias 'champion'")
    assert check(single) == ("skipped", "no 'previous' version to compare with")
    assert check(bad_time) == ("skipped", "champion v2 has no valid promoted_at tag")
    assert check(no_baseline) == (
        "skipped",
        "no baseline: previous v1 has no labelled predictions in the 86400 s before the promotion",
    )
    for name in (no_baseline, bad_time):
        assert aliases(registry, name) == {ALIAS: "2", PREVIOUS_ALIAS: "1"}
        assert ROLLBACK_CHECK_TAG not in tags(registry, name, "2")


def test_auto_rollback_fails_on_a_ledger_without_tables(registry: Registry, tmp_path: Path) -> None:
    name = promoted_twice(registry)
    with pytest.raises(LedgerUnavailable, match="has no predictions or labels table"):
        auto_rollback(settings(registry, name, empty_sqlite(tmp_path / "empty.db")), now=NOW)
    assert aliases(registry, name) == {ALIAS: "2", PREVIOUS_ALIAS: "1"}


# ---------------------------------------------------------------- `trainer rollback`


def trainer_rollback(registry: Registry, *args: str, **env: str) -> Any:
    return stack.run_cli(
        ["trainer", "rollback", *args],
        env={"MLFLOW_TRACKING_URI": registry.uri, "LOG_FORMAT": "json", **env},
        timeout=120,
    )


def test_cli_rollback_prints_what_it_did(registry: Registry) -> None:
    name = promoted_twice(registry)
    result = trainer_rollback(registry, "--model-name", name, "--reason", "wrong prices on the 5th")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {
        "model": name,
        "from_version": "2",
        "to_version": "1",
        "reason": "wrong prices on the 5th",
    }
    assert aliases(registry, name) == {ALIAS: "1"}
    assert tags(registry, name, "2")["rollback_reason"] == "wrong prices on the 5th"


def test_cli_check_rolls_back_then_a_manual_rollback_has_nothing_to_go_back_to(
    registry: Registry, ledger: Ledger
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    promoted_at = now - timedelta(hours=6)
    name = promoted_twice(registry, promoted_at)
    rng = np.random.default_rng(11)
    errors = {"previous_errors": rng.uniform(5, 15, 30), "new_errors": np.full(20, 40.0)}
    write_live_rows(ledger, name, **errors, now=now, promoted_at=promoted_at)
    env = {
        "TRAINER_LEDGER_DATABASE_URL": ledger.url,
        "TRAINER_ROLLBACK_MIN_LABELS": "20",
        "TRAINER_ROLLBACK_WINDOW_SECONDS": str(WINDOW.total_seconds()),
        "TRAINER_LABEL_DELAY_SECONDS": "0",
    }

    check = trainer_rollback(registry, "--check", "--model-name", name, **env)
    assert check.returncode == 0, check.stderr[-2000:]
    verdict = json.loads(check.stdout)
    assert (verdict["action"], verdict["from_version"], verdict["to_version"]) == ("rolled_back", "2", "1")
    assert verdict["labelled_rows"] == 20 and verdict["new_mae"] == pytest.approx(40.0)
    assert aliases(registry, name) == {ALIAS: "1"}

    manual = trainer_rollback(registry, "--model-name", name, **env)
    assert manual.returncode == 1
    assert f"model {name!r} has no 'previous' alias: nothing to roll back to" in manual.stderr
    assert "Traceback" not in manual.stderr and manual.stdout == ""
    assert aliases(registry, name) == {ALIAS: "1"}
