"""`trainer compare` (trainer.compare, trainer.compare_report) and `trainer promote --alias`.

A real ledger migrated and filled by the predictor's own code (SQLite; the shadow case once on the
session's PostgreSQL), in-process MLflow on a SQLite store (the rollback tests' registry), and for the
push a real Pushgateway. The rows' absolute errors are chosen by the test, so every MAE, RMSE and bias is
recomputed with numpy from those errors, and the intervals are checked against the population
difference the errors were drawn with.
"""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest
from numpy.typing import NDArray
from prometheus_client.parser import text_string_to_metric_families

from predictor.ledger.store import Label
from scripts import local_stack as stack
from tests.trainer import test_rollback
from tests.trainer.test_ledger_reader import Ledger, empty_sqlite, prediction
from tests.trainer.test_rollback import Registry, aliases, new_model, tags
from trainer.compare import Difference, decide, run_compare
from trainer.compare_report import JOB
from trainer.config import Settings
from trainer.errors import TrainerError
from trainer.gate import PREVIOUS_ALIAS, promote
from trainer.ledger import LedgerUnavailable, served_rows
from trainer.rollback import rollback

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
LABELLED_AT = NOW - timedelta(minutes=30)
"""When the matured labels arrived (TRAINER_LABEL_DELAY_SECONDS is 600 in these tests)."""
EXPERIMENT = "compare"

# The rollback tests' fixtures: in-process MLflow on SQLite, and ledgers (SQLite; SQLite and PostgreSQL).
registry = test_rollback.registry
ledger = test_rollback.ledger
any_ledger = test_rollback.any_ledger


@pytest.fixture(scope="module")
def experiment(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """TRAINER_EXPERIMENT_NAME of these tests, with its artifacts in a temp folder."""
    registry.client.create_experiment(EXPERIMENT, tmp_path_factory.mktemp("compare-artifacts").as_uri())
    return EXPERIMENT


def contenders(registry: Registry) -> str:
    """A model of its own: v1 is champion, v2 challenger."""
    name = new_model(registry)
    promote(registry.client, name, "champion", "1", now=NOW - timedelta(days=30))
    registry.client.set_registered_model_alias(name, "challenger", "2")
    return name


def settings(registry: Registry, name: str, ledger_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mlflow_tracking_uri": registry.uri,
        "model_name": name,
        "experiment_name": EXPERIMENT,
        "ledger_database_url": ledger_url,
        "label_delay_seconds": 600,
        "compare_min_rows": 200,
        "gate_bootstrap_samples": 2000,
        "mlflow_wait_seconds": 0,
    }
    return Settings(**{**values, **overrides})


def spread(start: datetime, end: datetime, n: int) -> list[datetime]:
    """n instants in [start, end), whole seconds."""
    step = (end - start) / n
    return [start + timedelta(seconds=int((step * k).total_seconds())) for k in range(n)]


@dataclass
class Feed:
    """Writes served rows with chosen absolute errors: the answering model alternates over- and
    under-predicting, the shadow always over-predicts (so both biases are known)."""

    ledger: Ledger
    name: str
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    ids: Iterator[int] = field(default_factory=itertools.count)

    def write(
        self,
        times: list[datetime],
        errors: NDArray[np.float64],
        *,
        version: str,
        alias: str | None,
        shadow_version: str | None = None,
        shadow_errors: NDArray[np.float64] | None = None,
        labelled_at: datetime | None = LABELLED_AT,
        model_name: str | None = None,
    ) -> None:
        rows, labels = [], []
        for k, (at, error) in enumerate(zip(times, errors, strict=True)):
            pid = f"r{next(self.ids)}:0"
            actual = float(self.rng.uniform(50, 200))
            row = prediction(
                pid, at=at, value=actual + (-1) ** k * float(error), version=version,
                model_name=model_name or self.name,
            )  # fmt: skip
            shadow = None if shadow_errors is None else actual + float(shadow_errors[k])
            rows.append(
                row | {"model_alias": alias, "shadow_version": shadow_version, "shadow_prediction": shadow}
            )
            labels.append(Label(pid, actual))
        self.ledger.predict(*rows)
        if labelled_at is not None:
            self.ledger.store.store_labels(labels, now=labelled_at)


def signed(errors: NDArray[np.float64]) -> NDArray[np.float64]:
    """prediction − actual of rows the Feed wrote as the answering model."""
    return errors * (-1.0) ** np.arange(len(errors))


def stats(prediction_minus_actual: NDArray[np.float64]) -> dict[str, float]:
    e = prediction_minus_actual
    return {"mae": np.mean(np.abs(e)), "rmse": np.sqrt(np.mean(e**2)), "bias": np.mean(e)}


def assert_arm(report_arm: dict[str, Any], expected: dict[str, float], rows: int) -> None:
    assert report_arm["rows"] == rows
    for key, value in expected.items():
        assert report_arm[key] == pytest.approx(value, abs=1e-4), key  # the report rounds to 4 places


# ---------------------------------------------------------------- shadow: paired


def test_shadow_mode_pairs_both_predictions_of_the_same_rows(
    registry: Registry, experiment: str, any_ledger: Ledger
) -> None:
    name = contenders(registry)
    feed = Feed(any_ledger, name)
    rng = np.random.default_rng(1)
    champion_errors = rng.uniform(5, 15, 300)
    challenger_errors = champion_errors * 0.7  # population difference: −0.3 × 10 = −3
    times = spread(NOW - timedelta(days=5), NOW - timedelta(hours=2), 300)
    feed.write(times, champion_errors, version="1", alias="champion", shadow_version="2",
               shadow_errors=challenger_errors)  # fmt: skip
    # What the comparison must leave out, each with errors that would show if it were counted:
    big = np.full(10, 500.0)
    recent = spread(NOW - timedelta(days=4), NOW - timedelta(hours=3), 10)
    feed.write(
        recent, big, version="1", alias="champion", shadow_version="3", shadow_errors=big
    )  # another shadow
    feed.write(recent, big, version="1", alias="champion")  # not shadow-scored
    feed.write(recent, big, version="1", alias="champion", shadow_version="2", shadow_errors=big,
               model_name=f"{name}-other")  # fmt: skip
    feed.write(recent, big, version="1", alias="champion", shadow_version="2", shadow_errors=big,
               labelled_at=None)  # fmt: skip  # no label yet
    feed.write(recent, big, version="1", alias="champion", shadow_version="2", shadow_errors=big,
               labelled_at=NOW - timedelta(minutes=5))  # fmt: skip  # label not matured
    old = spread(NOW - timedelta(days=40), NOW - timedelta(days=29), 10)
    feed.write(
        old, big, version="1", alias="champion", shadow_version="2", shadow_errors=big
    )  # before the window

    report = run_compare(
        settings(registry, name, any_ledger.url),
        champion_alias="champion",
        challenger_alias="challenger",
        now=NOW,
    )

    assert (report["mode"], report["verdict"]) == ("shadow", "challenger_better")
    assert report["mode_reason"] == "auto: 300 paired rows (at least 200)"
    assert_arm(report["champion"], stats(signed(champion_errors)), 300)
    assert_arm(report["challenger"], stats(challenger_errors), 300)
    assert (report["champion"]["version"], report["challenger"]["version"]) == ("1", "2")
    assert report["champion"]["share"] is None and report["rows_missing"] == {"champion": 0, "challenger": 0}
    d = report["difference"]
    assert d["mae"] == pytest.approx(np.mean(challenger_errors) - np.mean(champion_errors), abs=1e-4)
    assert d["low"] < -3 < d["high"] < 0 and d["paired"] and d["bootstrap_samples"] == 2000
    assert report["window"] == {
        "since": (NOW - timedelta(days=28)).isoformat(),
        "until": NOW.isoformat(),
        "labels_received_by": (NOW - timedelta(minutes=10)).isoformat(),
        "first_row": times[0].isoformat(),
        "last_row": times[-1].isoformat(),
    }
    assert report["metrics_pushed"] is False  # no TRAINER_PUSHGATEWAY_URL

    run = registry.client.get_run(report["mlflow_run_id"])
    assert run.info.run_name == "compare champion v1 vs challenger v2"
    assert run.info.experiment_id == registry.client.get_experiment_by_name(experiment).experiment_id
    assert run.info.status == "FINISHED"
    assert run.data.tags["comparison_verdict"] == "challenger_better"
    assert run.data.tags["comparison_mode"] == "shadow"
    assert run.data.metrics["champion_rows"] == 300
    assert run.data.metrics["challenger_mae"] == pytest.approx(np.mean(challenger_errors), rel=1e-9)
    assert run.data.metrics["mae_difference_high"] == pytest.approx(d["high"], abs=1e-4)
    artifact = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/comparison.json")
    assert artifact == {k: v for k, v in report.items() if k not in ("mlflow_run_id", "metrics_pushed")}
    version_tags = tags(registry, name, "2")
    assert version_tags["comparison_verdict"] == "challenger_better"
    assert version_tags["comparison_run_id"] == report["mlflow_run_id"]
    assert version_tags["comparison_champion_version"] == "1"
    assert aliases(registry, name) == {"champion": "1", "challenger": "2"}  # a comparison moves nothing


# ---------------------------------------------------------------- canary: two arms


def write_canary(feed: Feed, *, canary_scale: float, seed: int = 2) -> dict[str, Any]:
    """The champion serves from 5 days ago; the canary from 3 days ago until about 2 hours ago, a third of
    the rows. Champion rows outside the canary's span, up to one second before its first row, have errors
    of 50: they must not count."""
    rng = np.random.default_rng(seed)
    champion_errors, canary_errors = rng.uniform(5, 15, 400), rng.uniform(5, 15, 200) * canary_scale
    canary_times = spread(NOW - timedelta(days=3), NOW - timedelta(hours=2), 200)
    first, last = canary_times[0], canary_times[-1]
    feed.write(spread(NOW - timedelta(days=5), first, 50), np.full(50, 50.0), version="1", alias="champion")
    feed.write([first - timedelta(seconds=1)], np.array([50.0]), version="1", alias="champion")
    feed.write(spread(first, last, 400), champion_errors, version="1", alias="champion")
    feed.write(canary_times, canary_errors, version="2", alias="challenger")
    feed.write(spread(last + timedelta(minutes=1), NOW - timedelta(hours=1), 20), np.full(20, 50.0),
               version="1", alias="champion")  # fmt: skip  # after the canary stopped
    odd = spread(first, last, 10)
    feed.write(odd, np.full(10, 50.0), version="3", alias="champion")  # a pod still on an older champion
    feed.write(odd, np.full(10, 50.0), version="1", alias="challenger")  # the canary alias before it moved
    return {"champion": champion_errors, "canary": canary_errors, "first": first, "last": last}


def test_canary_mode_compares_the_two_arms_from_the_first_canary_row(
    registry: Registry, experiment: str, ledger: Ledger
) -> None:
    name = contenders(registry)
    written = write_canary(Feed(ledger, name), canary_scale=0.6)  # population difference: −0.4 × 10 = −4

    report = run_compare(
        settings(registry, name, ledger.url),
        champion_alias="champion",
        challenger_alias="challenger",
        now=NOW,
    )

    assert (report["mode"], report["verdict"]) == ("canary", "challenger_better")
    assert report["mode_reason"] == "auto: 0 paired rows (fewer than 200), 200 canary rows"
    assert report["window"]["first_row"] == written["first"].isoformat()
    assert report["window"]["last_row"] == written["last"].isoformat()
    assert_arm(report["champion"], stats(signed(written["champion"])), 400)
    assert_arm(report["challenger"], stats(signed(written["canary"])), 200)
    assert report["champion"]["share"] == pytest.approx(400 / 600, abs=1e-4)
    assert report["challenger"]["share"] == pytest.approx(200 / 600, abs=1e-4)
    d = report["difference"]
    assert d["mae"] == pytest.approx(np.mean(written["canary"]) - np.mean(written["champion"]), abs=1e-4)
    assert d["low"] < -4 < d["high"] < 0 and not d["paired"]
    assert tags(registry, name, "2")["comparison_verdict"] == "challenger_better"


def test_auto_mode_takes_shadow_with_enough_pairs_and_canary_otherwise(
    registry: Registry, experiment: str, ledger: Ledger
) -> None:
    name = contenders(registry)
    feed = Feed(ledger, name)
    write_canary(feed, canary_scale=1.0)
    pair_errors = np.random.default_rng(3).uniform(5, 15, 250)
    feed.write(spread(NOW - timedelta(days=2), NOW - timedelta(days=1), 250), pair_errors, version="1",
               alias="champion", shadow_version="2", shadow_errors=pair_errors * 1.3)  # fmt: skip

    def compare(**overrides: Any) -> dict[str, Any]:
        mode = overrides.pop("mode", "auto")
        return run_compare(settings(registry, name, ledger.url, **overrides), champion_alias="champion",
                           challenger_alias="challenger", mode=mode, now=NOW)  # fmt: skip

    shadow = compare()
    assert (shadow["mode"], shadow["champion"]["rows"], shadow["verdict"]) == (
        "shadow",
        250,
        "champion_better",
    )
    canary = compare(compare_min_rows=260)
    assert canary["mode"] == "canary"
    assert canary["mode_reason"] == "auto: 250 paired rows (fewer than 260), 200 canary rows"
    assert canary["verdict"] == "insufficient_data"  # 200 canary rows < 260
    assert canary["rows_missing"] == {"champion": 0, "challenger": 60}
    assert canary["reason"].endswith(": 60 more canary rows")
    # The shadow-scored rows fall inside the canary's span: the champion arm has them too.
    assert canary["champion"]["rows"] > 250
    forced = compare(compare_min_rows=260, mode="shadow")
    assert (forced["mode"], forced["mode_reason"], forced["verdict"]) == (
        "shadow",
        "--mode shadow",
        "insufficient_data",
    )
    assert forced["reason"] == "250 paired rows, 260 per arm needed (TRAINER_COMPARE_MIN_ROWS): 10 more pairs"
    assert forced["champion"]["mae"] is not None and forced["difference"] is None


@pytest.mark.parametrize(
    ("difference", "min_improvement", "verdict"),
    [
        (Difference(-0.5, -0.8, -0.2, True, 2000), 0.0, "challenger_better"),
        (Difference(-0.5, -0.8, -0.2, True, 2000), 0.3, "no_difference"),  # better, not by 0.3 for sure
        (Difference(0.5, 0.1, 0.9, False, 2000), 0.0, "champion_better"),
        (Difference(-0.1, -0.4, 0.2, False, 2000), 0.0, "no_difference"),
        (Difference(0.0, 0.0, 0.0, True, 2000), 0.0, "no_difference"),  # identical errors
    ],
)
def test_verdict_from_the_interval(difference: Difference, min_improvement: float, verdict: str) -> None:
    assert decide(difference, min_improvement)[0] == verdict


# ---------------------------------------------------------------- failures of the comparison


def test_missing_or_equal_aliases_and_an_old_ledger_are_errors(
    registry: Registry, experiment: str, ledger: Ledger, tmp_path: Path
) -> None:
    name = new_model(registry)
    promote(registry.client, name, "champion", "1", now=NOW)
    current = settings(registry, name, ledger.url)
    with pytest.raises(TrainerError, match=f"model '{name}' has no 'challenger' alias"):
        run_compare(current, champion_alias="champion", challenger_alias="challenger", now=NOW)
    registry.client.set_registered_model_alias(name, "challenger", "1")
    with pytest.raises(TrainerError, match="both point at v1: nothing to compare"):
        run_compare(current, champion_alias="champion", challenger_alias="challenger", now=NOW)

    url = empty_sqlite(tmp_path / "before-0002.db")  # a ledger the predictor has not migrated yet
    with sqlite3.connect(tmp_path / "before-0002.db") as conn:
        conn.execute(
            "CREATE TABLE predictions (id TEXT, model_name TEXT, model_version TEXT, predicted_at TIMESTAMP, "
            "features JSON, prediction FLOAT)"
        )
        conn.execute("CREATE TABLE labels (id TEXT, actual FLOAT, received_at TIMESTAMP)")
    with pytest.raises(
        LedgerUnavailable, match="has no model_alias, shadow_version, shadow_prediction column"
    ):
        served_rows(url, name, NOW - timedelta(days=1), NOW, NOW)


def test_a_push_that_fails_is_a_warning_and_the_report_is_kept(
    registry: Registry, experiment: str, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    name = contenders(registry)
    unreachable = f"http://127.0.0.1:{stack.free_port()}"
    with caplog.at_level(logging.WARNING, logger="trainer.compare_report"):
        report = run_compare(settings(registry, name, ledger.url, pushgateway_url=unreachable),
                             champion_alias="champion", challenger_alias="challenger", now=NOW)  # fmt: skip
    assert report["verdict"] == "insufficient_data" and report["metrics_pushed"] is False
    assert report["reason"] == "0 paired rows, 200 per arm needed (TRAINER_COMPARE_MIN_ROWS): 200 more pairs"
    assert [r.getMessage() for r in caplog.records] == [
        "could not push the comparison's metrics; the MLflow run has the report"
    ]
    run = registry.client.get_run(report["mlflow_run_id"])
    assert run.data.tags["comparison_verdict"] == "insufficient_data"
    assert "mae_difference" not in run.data.metrics
    assert tags(registry, name, "2")["comparison_verdict"] == "insufficient_data"


# ---------------------------------------------------------------- the CLI


def cli(registry: Registry, *args: str, **env: str) -> Any:
    base = {"MLFLOW_TRACKING_URI": registry.uri, "LOG_FORMAT": "json", "TRAINER_MLFLOW_WAIT_SECONDS": "0"}
    return stack.run_cli(["trainer", *args], env=base | env, timeout=120)


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.Process]:
    proc = stack.start_pushgateway(tmp_path_factory.mktemp("compare-pushgateway"))
    yield proc
    proc.stop()


@pytest.fixture
def pushed_model(registry: Registry, pushgateway: stack.Process) -> Iterator[str]:
    """A model of its own (`contenders`) whose Pushgateway group is deleted afterwards: Debian's
    Pushgateway persists its groups to one file by default, so they would outlive this gateway."""
    name = contenders(registry)
    yield name
    httpx.delete(f"{pushgateway.url}/metrics/job/{JOB}/model_name/{name}", timeout=5).raise_for_status()


def pushed(gateway: stack.Process, name: str) -> dict[tuple[str, tuple], float]:
    """The model_comparison_* samples of this model's group, keyed by (name, the other labels)."""
    text = httpx.get(gateway.url + "/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            ours = s.labels.get("job") == JOB and s.labels.get("model_name") == name
            if s.name.startswith("model_comparison_") and ours:
                labels = tuple(
                    sorted((k, v) for k, v in s.labels.items() if k not in ("job", "instance", "model_name"))
                )
                samples[(s.name, labels)] = s.value
    return samples


def test_cli_compare_prints_the_report_and_pushes_the_metrics(
    registry: Registry, experiment: str, ledger: Ledger, pushgateway: stack.Process, pushed_model: str
) -> None:
    name = pushed_model
    now = datetime.now(UTC)
    since = now - timedelta(days=2)
    errors = np.random.default_rng(4).uniform(5, 15, 120)
    feed = Feed(ledger, name)
    labelled_at = now - timedelta(minutes=30)
    feed.write(spread(since, now - timedelta(hours=1), 120), errors, version="1", alias="champion",
               shadow_version="2", shadow_errors=errors * 1.5, labelled_at=labelled_at)  # fmt: skip
    older = spread(since - timedelta(days=1), since, 50)  # before --since: the challenger would win there
    feed.write(older, np.full(50, 40.0), version="1", alias="champion", shadow_version="2",
               shadow_errors=np.zeros(50), labelled_at=labelled_at)  # fmt: skip
    env = {
        "TRAINER_MODEL_NAME": name,
        "TRAINER_EXPERIMENT_NAME": experiment,
        "TRAINER_LEDGER_DATABASE_URL": ledger.url,
        "TRAINER_COMPARE_MIN_ROWS": "100",
        "TRAINER_PUSHGATEWAY_URL": pushgateway.url,
    }

    result = cli(registry, "compare", "--challenger-alias", "challenger", "--since", since.isoformat(), **env)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["mode"], report["verdict"], report["metrics_pushed"]) == (
        "shadow",
        "champion_better",
        True,
    )
    assert report["window"]["since"] == since.isoformat() and report["champion"]["rows"] == 120
    assert report["challenger"]["mae"] == pytest.approx(np.mean(errors * 1.5), abs=1e-4)
    metrics = pushed(pushgateway, name)
    arm = {"champion": (("arm", "champion"), ("model_version", "1"))}
    arm["challenger"] = (("arm", "challenger"), ("model_version", "2"))
    for side in ("champion", "challenger"):
        assert metrics[("model_comparison_mae", arm[side])] == pytest.approx(report[side]["mae"], abs=1e-4)
        assert metrics[("model_comparison_rows", arm[side])] == 120
    d = report["difference"]
    assert metrics[("model_comparison_mae_difference", ())] == pytest.approx(d["mae"], abs=1e-4)
    assert metrics[("model_comparison_mae_difference_low", ())] == pytest.approx(d["low"], abs=1e-4)
    assert metrics[("model_comparison_mae_difference_high", ())] == pytest.approx(d["high"], abs=1e-4)
    assert d["low"] > 0 and metrics[("model_comparison_verdict", (("verdict", "champion_better"),))] == 1
    for other in ("challenger_better", "no_difference", "insufficient_data"):
        assert metrics[("model_comparison_verdict", (("verdict", other),))] == 0
    assert abs(metrics[("model_comparison_timestamp_seconds", ())] - now.timestamp()) < 120

    # The next push replaces the group: with too few rows there is no difference left to show.
    strict = settings(registry, name, ledger.url, compare_min_rows=500, pushgateway_url=pushgateway.url)
    again = run_compare(strict, champion_alias="champion", challenger_alias="challenger", since=since)
    assert (again["verdict"], again["metrics_pushed"]) == ("insufficient_data", True)
    metrics = pushed(pushgateway, name)
    assert metrics[("model_comparison_verdict", (("verdict", "insufficient_data"),))] == 1
    assert metrics[("model_comparison_verdict", (("verdict", "champion_better"),))] == 0
    assert ("model_comparison_mae_difference", ()) not in metrics


def test_cli_promote_alias_moves_the_champion_keeping_previous(registry: Registry) -> None:
    """Blue-green: one alias move to the challenger, and `trainer rollback` (trainer.rollback) moves it back."""
    name = contenders(registry)
    result = cli(registry, "promote", "--alias", "challenger", "--model-name", name)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "model": name,
        "alias": "champion",
        "version": "2",
        "promoted": True,
        "from_alias": "challenger",
    }
    assert aliases(registry, name) == {"champion": "2", PREVIOUS_ALIAS: "1", "challenger": "2"}
    assert tags(registry, name, "2")["previous_version"] == "1"
    rollback(registry.client, name, "champion", "the canary looked better than it was")
    assert aliases(registry, name) == {"champion": "1", "challenger": "2"}


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["promote", "--version", "1", "--alias", "challenger"], {}, 2,
         "argument --alias: not allowed with argument --version"),
        (["promote"], {}, 2, "one of the arguments --version --alias is required"),
        (["promote", "--alias", "nope"], {}, 1, "has no 'nope' alias: nothing to promote"),
        (["compare"], {}, 2,
         "trainer: invalid settings: TRAINER_LEDGER_DATABASE_URL: required by `trainer compare`"),
        (["compare", "--since", "yesterday"], {"TRAINER_LEDGER_DATABASE_URL": "sqlite:///x.db"}, 2,
         "argument --since: not an ISO time: 'yesterday'"),
    ],
)  # fmt: skip
def test_cli_bad_usage_is_one_clear_line(
    registry: Registry, args: list[str], env: dict[str, str], code: int, message: str
) -> None:
    name = contenders(registry)
    result = cli(registry, *args, **env, TRAINER_MODEL_NAME=name)
    assert result.returncode == code
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert aliases(registry, name) == {"champion": "1", "challenger": "2"}
