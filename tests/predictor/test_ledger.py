"""The predictions ledger and the feedback route, on a real SQLite file and a real PostgreSQL.

In process (TestClient) against the tiny registry; the database is real on both sides, and "down" is the
PostgreSQL server stopped, not a double.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from predictor.ledger.sampling import is_sampled
from predictor.ledger.store import Label, LedgerStore, create_ledger_engine, migrate
from scripts import local_stack as stack
from scripts.local_stack import wait_for
from tests.predictor.conftest import TinyRegistry, records, tiny_frame

ROWS = records(tiny_frame(n=30, seed=7))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty ledger database: a fresh SQLite file, or the session PostgreSQL with the tables dropped."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    server: stack.PostgresServer = request.getfixturevalue("postgres_server")
    drop_tables(server.url)
    yield server.url
    if not server.alive():  # a test that stopped it must not leave it down for the next one
        server.start()


def drop_tables(url: str) -> None:
    engine = create_ledger_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS labels, predictions, ledger_schema_version"))
    engine.dispose()


def ledger_rows(url: str, table: str) -> pd.DataFrame:
    engine = create_ledger_engine(url)
    try:
        with engine.connect() as connection:
            return pd.read_sql(sa.text(f"SELECT * FROM {table}"), connection)
    except sa.exc.OperationalError:  # not migrated yet
        return pd.DataFrame()
    finally:
        engine.dispose()


def predict(client: TestClient, name: str, rows: list[dict], request_id: str | None = None) -> dict:
    headers = {"X-Request-Id": request_id} if request_id else {}
    response = client.post(f"/v1/models/{name}:predict", json={"instances": rows}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def feedback(client: TestClient, name: str, labels: list[dict], **kwargs) -> tuple[int, dict]:
    response = client.post(f"/v1/models/{name}:feedback", json={"labels": labels}, **kwargs)
    return response.status_code, response.json()


def metric(client: TestClient, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " ") or (
            line.startswith(line_start + "{") and line_start.endswith("}")
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric line starting with {line_start}")


@pytest.fixture
def ledger_client(make_client: Callable[..., TestClient], ledger_url: str) -> TestClient:
    client = make_client(ledger_database_url=ledger_url)
    wait_for(lambda: client.app.state.ledger.ready, what="the ledger migrated")  # type: ignore[attr-defined]
    return client


# ---- prediction ids and the ledger


def test_prediction_ids_follow_the_request_id_and_reach_the_ledger(
    ledger_client: TestClient, tiny_registry: TinyRegistry, ledger_url: str
) -> None:
    body = predict(ledger_client, tiny_registry.name, ROWS[:5], request_id="booking-42")
    assert body["prediction_ids"] == [f"booking-42:{row}" for row in range(5)]
    wait_for(lambda: len(ledger_rows(ledger_url, "predictions")) == 5, what="5 rows in the ledger")
    stored = ledger_rows(ledger_url, "predictions").set_index("id").loc[body["prediction_ids"]]
    assert stored["prediction"].tolist() == body["predictions"]
    assert set(stored["model_version"]) == {body["model_version"]}
    assert stored["request_id"].eq("booking-42").all()
    features = stored["features"].map(lambda f: f if isinstance(f, dict) else json.loads(f)).tolist()
    assert [f["nights"] for f in features] == [row["nights"] for row in ROWS[:5]]


def test_generated_request_ids_give_distinct_prediction_ids(ledger_client: TestClient, tiny_registry) -> None:
    first = predict(ledger_client, tiny_registry.name, ROWS[:2])
    second = predict(ledger_client, tiny_registry.name, ROWS[:2])
    assert first["prediction_ids"][0].startswith(first["request_id"] + ":")
    assert not set(first["prediction_ids"]) & set(second["prediction_ids"])


# ---- feedback


def test_feedback_is_idempotent_last_write_wins_and_reports_unmatched(
    ledger_client: TestClient, tiny_registry: TinyRegistry, ledger_url: str
) -> None:
    ids = predict(ledger_client, tiny_registry.name, ROWS[:3], request_id="r1")["prediction_ids"]
    wait_for(lambda: len(ledger_rows(ledger_url, "predictions")) == 3, what="3 predictions written")

    status, body = feedback(
        ledger_client,
        tiny_registry.name,
        [
            {"id": ids[0], "actual": 100.0},
            {"id": ids[1], "actual": 110.0, "time": "2026-12-06T10:00:00+01:00"},
            {"id": ids[0], "actual": 101.0},  # the same id twice in one request: the last counts
            {"id": "never-predicted:0", "actual": 5.0},
        ],
    )
    assert status == 202
    assert body == {
        "stored": 3,
        "duplicates": 1,
        "replaced": 0,
        "matched": 2,
        "unmatched": 1,
        "unmatched_ids": ["never-predicted:0"],
    }
    status, body = feedback(ledger_client, tiny_registry.name, [{"id": ids[0], "actual": 102.0}])
    assert (status, body["stored"], body["replaced"]) == (202, 1, 1)

    labels = ledger_rows(ledger_url, "labels").set_index("id")
    assert len(labels) == 3  # one row per id, however often it was sent
    assert labels.loc[ids[0], "actual"] == 102.0  # last write wins
    assert pd.Timestamp(labels.loc[ids[1], "label_time"]).tz_localize(None) in (
        pd.Timestamp("2026-12-06T09:00:00"),  # SQLite: naive UTC
        pd.Timestamp("2026-12-06T10:00:00+01:00").tz_convert(None),
    )


def test_a_label_before_its_prediction_is_kept_and_joins_later(
    ledger_client: TestClient, tiny_registry: TinyRegistry, ledger_url: str
) -> None:
    status, body = feedback(ledger_client, tiny_registry.name, [{"id": "early:0", "actual": 80.0}])
    assert (status, body["matched"], body["unmatched"]) == (202, 0, 1)
    predict(ledger_client, tiny_registry.name, ROWS[:1], request_id="early")
    engine = create_ledger_engine(ledger_url)
    join = sa.text("SELECT p.prediction, l.actual FROM predictions p JOIN labels l ON l.id = p.id")

    def joined() -> list:
        with engine.connect() as connection:
            return list(connection.execute(join))

    assert wait_for(joined, what="the joined row")[0][1] == 80.0
    engine.dispose()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"labels": [{"id": "a:0"}]}, "labels.0.actual"),
        ({"labels": [{"id": "a:0", "actual": "high"}]}, "labels.0.actual"),
        ({"labels": [{"id": "a:0", "actual": "12.5"}]}, "labels.0.actual"),  # a number, not its text
        ({"labels": [{"id": "a:0", "actual": True}]}, "labels.0.actual"),
        ({"labels": [{"id": "a:0", "actual": 1, "time": 0}]}, "labels.0.time"),  # not read as Unix time
        ({"labels": [{"id": "a:0", "actual": 1, "time": "0001-01-01T00:00:00+01:00"}]}, "labels.0.time"),
        ({"labels": [{"id": "a:0", "actual": 1e200}]}, "labels.0.actual"),
        ({"labels": [{"id": "a\u0000b:0", "actual": 1}]}, "labels.0.id"),
        ({"labels": [{"id": "a:0", "actual": 1, "time": "2026-12-06T10:00:00"}]}, "labels.0.time"),
        ({"labels": [{"id": "", "actual": 1}]}, "labels.0.id"),
        ({"labels": [{"id": "a:0", "actual": 1, "price": 3}]}, "labels.0.price"),
        ({"labels": []}, "labels"),
        ({"label": []}, "labels"),
    ],
)
def test_malformed_feedback_is_a_422_naming_the_field(
    ledger_client: TestClient, tiny_registry: TinyRegistry, ledger_url: str, body: dict, field: str
) -> None:
    response = ledger_client.post(f"/v1/models/{tiny_registry.name}:feedback", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]
    assert ledger_rows(ledger_url, "labels").empty  # nothing of a refused body is stored


def test_feedback_refuses_nan_and_bad_json(ledger_client: TestClient, tiny_registry: TinyRegistry) -> None:
    url = f"/v1/models/{tiny_registry.name}:feedback"
    nan = ledger_client.post(url, content=b'{"labels":[{"id":"a:0","actual":NaN}]}')
    assert nan.status_code == 422
    assert ledger_client.post(url, content=b"{not json").status_code == 422


def test_feedback_limits_names_and_tokens(make_client, tiny_registry: TinyRegistry, tmp_path: Path) -> None:
    client = make_client(
        ledger_database_url=f"sqlite:///{tmp_path / 'l.db'}", feedback_max_labels=2, api_token="s3cret"
    )
    auth = {"Authorization": "Bearer s3cret"}
    labels = [{"id": f"x:{i}", "actual": 1.0} for i in range(3)]
    assert feedback(client, tiny_registry.name, labels[:1])[0] == 401
    assert feedback(client, tiny_registry.name, labels, headers=auth)[0] == 413
    assert feedback(client, "another-model", labels[:1], headers=auth)[0] == 404


def test_feedback_without_a_ledger_is_503_not_a_fake_202(
    client: TestClient, tiny_registry: TinyRegistry
) -> None:
    status, body = feedback(client, tiny_registry.name, [{"id": "x:0", "actual": 1.0}])
    assert status == 503
    assert "PREDICTOR_LEDGER_DATABASE_URL" in body["error"]


# ---- the database goes down (PostgreSQL only: an SQLite file cannot be "down")


@pytest.fixture
def postgres_client(make_client, postgres_server: stack.PostgresServer) -> Iterator[TestClient]:
    drop_tables(postgres_server.url)
    client = make_client(ledger_database_url=postgres_server.url, ledger_queue_rows=50)
    wait_for(lambda: client.app.state.ledger.ready, what="the ledger migrated")  # type: ignore[attr-defined]
    yield client
    if not postgres_server.alive():
        postgres_server.start()


def test_predictions_never_fail_while_the_database_is_down_and_losses_are_counted(
    postgres_client: TestClient, postgres_server: stack.PostgresServer, tiny_registry: TinyRegistry
) -> None:
    name = tiny_registry.name
    dropped_before = metric(postgres_client, 'predictor_ledger_dropped_rows_total{reason="queue_full"}')
    written_before = metric(postgres_client, "predictor_ledger_written_rows_total")
    postgres_server.stop()

    statuses = []
    for i in range(8):  # 8 × 10 rows against a queue of 50: 30 rows must be dropped, and counted
        response = postgres_client.post(
            f"/v1/models/{name}:predict", json={"instances": ROWS[:10]}, headers={"X-Request-Id": f"down-{i}"}
        )
        statuses.append(response.status_code)
    assert statuses == [200] * 8
    dropped = (
        metric(postgres_client, 'predictor_ledger_dropped_rows_total{reason="queue_full"}') - dropped_before
    )
    assert dropped == 30

    status, body = feedback(postgres_client, name, [{"id": "down-0:0", "actual": 1.0}])
    assert status == 503, body  # never a 500, never a fake 202

    postgres_server.start()
    wait_for(
        lambda: metric(postgres_client, "predictor_ledger_written_rows_total") - written_before == 50,
        timeout=60,
        what="the 50 queued rows written once the database is back",
    )
    status, body = feedback(postgres_client, name, [{"id": "down-0:0", "actual": 1.0}])  # the client retries
    assert (status, body["matched"]) == (202, 1)
    stored = ledger_rows(postgres_server.url, "predictions")
    assert len(stored) == 50 and set(stored["id"]) >= {f"down-{i}:{r}" for i in range(5) for r in range(10)}


# ---- sampling, retention, migrations


def test_sampling_by_hash_keeps_the_same_rows_on_two_pods(make_client, tiny_registry, tmp_path: Path) -> None:
    pods = [
        make_client(ledger_database_url=f"sqlite:///{tmp_path / f'pod{i}.db'}", ledger_sample_rate=0.5)
        for i in range(2)
    ]
    ids = []
    for i in range(20):
        for pod in pods:  # the same request (same id) answered by each pod
            body = predict(pod, tiny_registry.name, ROWS[:10], request_id=f"same-{i}")
        ids += body["prediction_ids"]
    expected = {i for i in ids if is_sampled(i, 0.5)}
    for i in range(len(pods)):
        url = f"sqlite:///{tmp_path / f'pod{i}.db'}"
        wait_for(
            lambda url=url: set(ledger_rows(url, "predictions").get("id", [])) == expected,
            what="sampled rows",
        )
    assert 0.35 < len(expected) / len(ids) < 0.65
    # The rule is the documented one, so a label feed can pre-filter with it.
    digest = lambda i: int.from_bytes(hashlib.sha256(i.encode()).digest()[:8], "big") / 2**64  # noqa: E731
    assert expected == {i for i in ids if digest(i) < 0.5}


def test_retention_and_size_bound_delete_the_oldest(ledger_url: str) -> None:
    engine = create_ledger_engine(ledger_url)
    migrate(engine)
    migrate(engine)  # idempotent: a second start changes nothing
    store = LedgerStore(engine)
    now = datetime.now(UTC)
    ages = [20, 15, 3, 2, 1]  # days
    store.insert_predictions(
        [
            {
                "id": f"old:{d}",
                "request_id": "old",
                "model_name": "m",
                "model_version": "1",
                "predicted_at": now - timedelta(days=d),
                "features": {},
                "prediction": 1.0,
            }
            for d in ages
        ]
    )
    store.store_labels([Label(f"old:{d}", 2.0) for d in ages], now=now - timedelta(days=16))
    deleted = store.purge(retention=timedelta(days=14), max_rows=2, now=now)
    assert deleted == 2 + 5 + 1  # two past retention, every label (received 16 days ago), one past the bound
    assert sorted(ledger_rows(ledger_url, "predictions")["id"]) == ["old:1", "old:2"]
    engine.dispose()


def test_concurrent_starts_migrate_once(postgres_server: stack.PostgresServer) -> None:
    drop_tables(postgres_server.url)
    engines = [create_ledger_engine(postgres_server.url) for _ in range(4)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(migrate, engines))  # four pods starting together: the advisory lock serialises them
    with engines[0].connect() as connection:
        assert connection.execute(
            sa.text("SELECT version_num FROM ledger_schema_version")
        ).scalars().all() == ["0002"]
    for engine in engines:
        engine.dispose()


# ---- predictor labels import


def run_import(url: str, path: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "predictor", "labels", "import", path],
        env={"PREDICTOR_LEDGER_DATABASE_URL": url, "LOG_FORMAT": "text", "PATH": "/usr/bin:/bin"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_labels_import_stores_valid_rows_and_reports_the_rest(ledger_url: str, tmp_path: Path) -> None:
    csv = tmp_path / "actuals.csv"
    csv.write_text(
        "id,actual,time,note\n"
        "a:0,100.5,2026-12-01T00:00:00Z,x\n"
        "a:1,not-a-number,,y\n"
        "a:2,90,,\n"
        "a:0,101,,dup\n"
        ",50,,no id\n"
    )
    done = run_import(ledger_url, str(csv))
    assert done.returncode == 1, done.stderr  # some rows were rejected
    summary = json.loads(done.stdout)
    assert {k: summary[k] for k in ("rows_read", "stored", "duplicates", "rejected", "unmatched")} == {
        "rows_read": 5,
        "stored": 2,
        "duplicates": 1,
        "rejected": 2,
        "unmatched": 2,
    }
    assert [r["row"] for r in summary["reasons"]] == [2, 5]
    assert "actual" in summary["reasons"][0]["reason"] and "id" in summary["reasons"][1]["reason"]
    assert summary["ignored_columns"] == ["note"]
    labels = ledger_rows(ledger_url, "labels").set_index("id")["actual"].to_dict()
    assert labels == {"a:0": 101.0, "a:2": 90.0}

    frame = pd.DataFrame({"id": ["a:0", "b:0"], "actual": [7.0, 8.0]})
    frame.to_parquet(tmp_path / "actuals.parquet", engine="fastparquet")
    again = run_import(ledger_url, str(tmp_path / "actuals.parquet"))
    assert again.returncode == 0, again.stderr
    assert {k: json.loads(again.stdout)[k] for k in ("stored", "replaced")} == {
        "stored": 2,
        "replaced": 1,
    }


def test_labels_import_errors_are_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    (tmp_path / "x.txt").write_text("id,actual\n")
    (tmp_path / "y.csv").write_text("identifier,actual\n1,2\n")
    for path, words in [
        ("missing.csv", "no such file"),
        (str(tmp_path / "x.txt"), "unknown format"),
        (str(tmp_path / "y.csv"), "missing column(s) id"),
    ]:
        done = run_import(url, path)
        assert done.returncode == 1 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
    unset = subprocess.run(
        [sys.executable, "-m", "predictor", "labels", "import", "-"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert unset.returncode == 2 and "PREDICTOR_LEDGER_DATABASE_URL" in unset.stderr
    stdin = run_import(url, "-", stdin="id,actual\nz:0,3\n")
    assert stdin.returncode == 0 and json.loads(stdin.stdout)["stored"] == 1
