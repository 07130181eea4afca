"""The HTTP API in-process, serving the tiny model from a SQLite MLflow store (one success and one failure per route)."""

from __future__ import annotations

import json

import mlflow
import numpy as np
from prometheus_client import REGISTRY

from predictor.config import Settings
from tests.predictor.conftest import TINY_MODEL, records, tiny_frame

PREDICT = f"/v1/models/{TINY_MODEL}:predict"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_predictions_equal_model_predict_for_every_body_shape(client, tiny_registry) -> None:
    X = tiny_frame(50, seed=7)
    model = mlflow.sklearn.load_model(tiny_registry.client.get_model_version_download_uri(TINY_MODEL, "1"))
    expected = model.predict(X).tolist()
    rows = records(X)
    split = {"columns": list(X.columns), "data": [list(r.values()) for r in rows]}
    for body in ({"instances": rows}, {"dataframe_records": rows}, {"dataframe_split": split}):
        response = client.post(PREDICT, json=body)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == expected
        assert response.json()["model_name"] == TINY_MODEL and response.json()["model_version"] == "1"


def test_request_id_is_echoed_from_the_header_or_made_up(client) -> None:
    row = records(tiny_frame(1))
    response = client.post(PREDICT, json={"instances": row}, headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 200
    assert response.json()["request_id"] == response.headers["x-request-id"] == "abc-123"
    generated = client.post(PREDICT, json={"instances": row})
    assert (
        len(generated.headers["x-request-id"]) == 32
        and generated.json()["request_id"] == generated.headers["x-request-id"]
    )


def test_invalid_records_are_422_naming_each_field(client) -> None:
    response = client.post(PREDICT, json={"instances": [{"nights": "two", "base_price": 80.0, "stars": 4}]})
    assert response.status_code == 422
    assert [tuple(d["loc"]) for d in response.json()["detail"]] == [
        ("instances", 0, "nights"),
        ("instances", 0, "stars"),
    ]
    assert "instances.0.nights" in response.json()["error"]


def test_extra_fields_are_dropped_when_configured(make_client) -> None:
    client = make_client(extra_fields="ignore")
    response = client.post(
        PREDICT, json={"instances": [{"nights": 2, "base_price": 80.0, "booking_id": "x"}]}
    )
    assert response.status_code == 200, response.text


def test_too_many_rows_is_413(make_client) -> None:
    client = make_client(max_batch_size=3)
    response = client.post(PREDICT, json={"instances": records(tiny_frame(4))})
    assert response.status_code == 413
    assert "maximum is 3" in response.json()["error"]


def test_oversized_body_is_413_before_it_is_parsed(make_client) -> None:
    client = make_client(max_body_bytes=2048)
    body = json.dumps({"instances": records(tiny_frame(100))}).encode()
    assert len(body) > 2048
    declared = client.post(PREDICT, content=body, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413
    assert "PREDICTOR_MAX_BODY_BYTES" in declared.json()["error"]
    # Chunked (no Content-Length): refused while streaming, too.
    chunked = client.post(
        PREDICT, content=iter([body[:1500], body[1500:]]), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413
    small = client.post(PREDICT, json={"instances": records(tiny_frame(2))})
    assert small.status_code == 200, small.text


def test_unknown_model_is_404(client) -> None:
    assert client.post("/v1/models/other:predict", json={"instances": [{}]}).status_code == 404
    assert client.get("/v1/models/other").status_code == 404


def test_not_loaded_yet_is_503_while_liveness_stays_200(make_client, tmp_path) -> None:
    empty_store = Settings(mlflow_tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}", model_name=TINY_MODEL)
    client = make_client(ready=False, settings=empty_store)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    response = client.post(PREDICT, json={"instances": records(tiny_frame(1))})
    assert response.status_code == 503 and "not loaded yet" in response.json()["error"]
    assert client.get(f"/v1/models/{TINY_MODEL}").json() == {
        "name": TINY_MODEL,
        "ready": False,
        "alias": "champion",
    }


def test_model_metadata_reports_readiness_version_and_signature(client, tiny_registry) -> None:
    body = client.get(f"/v1/models/{TINY_MODEL}").json()
    version = tiny_registry.client.get_model_version(TINY_MODEL, "1")
    assert body["ready"] is True and body["name"] == TINY_MODEL and body["alias"] == "champion"
    assert body["version"] == "1" and body["run_id"] == version.run_id and body["loaded_at"]
    assert [c["name"] for c in body["signature"]["inputs"]] == ["nights", "base_price", "city"]


def test_openapi_shows_the_model_fields(client) -> None:
    components = client.get("/openapi.json").json()["components"]["schemas"]
    record = components["TinyAdrRecord"]
    assert set(record["properties"]) == {"nights", "base_price", "city"}
    assert record["required"] == ["nights", "base_price"]
    assert len(components["PredictRequest"]["anyOf"]) == 3


def test_auth_protects_predict_and_samples_only(make_client) -> None:
    client = make_client(api_token="s3cret")
    body = {"instances": records(tiny_frame(1))}
    assert client.post(PREDICT, json=body).status_code == 401
    assert client.post(PREDICT, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/samples").status_code == 401
    ok = {"Authorization": "Bearer s3cret"}
    assert client.post(PREDICT, json=body, headers=ok).status_code == 200
    assert client.get("/v1/samples", headers=ok).status_code == 200
    for open_route in ("/healthz", "/readyz", "/metrics", f"/v1/models/{TINY_MODEL}"):
        assert client.get(open_route).status_code == 200, open_route


def test_auth_is_off_without_a_token(client) -> None:
    assert client.get("/v1/samples").status_code == 200


def test_samples_hold_each_predicted_row_and_are_bounded(make_client) -> None:
    client = make_client(sample_buffer_size=5)
    X = tiny_frame(4, seed=3)
    first = client.post(PREDICT, json={"instances": records(X)}, headers={"X-Request-ID": "first"}).json()
    body = client.get("/v1/samples").json()
    assert body["buffer_size"] == 5 and body["buffered"] == 4 and body["dropped_total"] == 0
    sample = body["samples"][0]
    assert (
        sample["request_id"] == "first"
        and sample["model_name"] == TINY_MODEL
        and sample["model_version"] == "1"
    )
    assert sample["features"] == records(X)[0] and sample["prediction"] == first["predictions"][0]

    client.post(PREDICT, json={"instances": records(X)}, headers={"X-Request-ID": "second"})
    body = client.get("/v1/samples").json()
    assert body["buffered"] == 5 and body["dropped_total"] == 3
    assert [s["request_id"] for s in body["samples"]] == ["first"] + ["second"] * 4


def test_samples_filter_by_time_and_limit(client) -> None:
    client.post(PREDICT, json={"instances": records(tiny_frame(3))})
    everything = client.get("/v1/samples").json()["samples"]
    cutoff = everything[-1]["timestamp"]
    client.post(PREDICT, json={"instances": records(tiny_frame(2))}, headers={"X-Request-ID": "late"})
    newer = client.get("/v1/samples", params={"since": cutoff}).json()["samples"]
    assert [s["request_id"] for s in newer] == ["late", "late"]
    assert len(client.get("/v1/samples", params={"limit": 2}).json()["samples"]) == 2
    assert client.get("/v1/samples", params={"limit": 0}).status_code == 422


def test_metrics_follow_the_contract(client) -> None:
    labels = {"route": "/v1/models/{name}:predict", "method": "POST", "status": "200"}
    before = metric("predictor_http_requests_total", **labels)
    rows_before = metric("predictor_predictions_total", model_name=TINY_MODEL, model_version="1")
    assert client.post(PREDICT, json={"instances": records(tiny_frame(3))}).status_code == 200
    assert metric("predictor_http_requests_total", **labels) == before + 1
    assert metric("predictor_predictions_total", model_name=TINY_MODEL, model_version="1") == rows_before + 3
    assert metric("predictor_model_loaded", model_name=TINY_MODEL) == 1
    assert (
        metric(
            "predictor_model_info",
            model_name=TINY_MODEL,
            model_alias="champion",
            model_version="1",
            run_id=client.get(f"/v1/models/{TINY_MODEL}").json()["run_id"],
        )
        == 1
    )
    text = client.get("/metrics").text
    for name in (
        "predictor_http_request_duration_seconds_bucket",
        "predictor_prediction_value_bucket",
        "predictor_batch_size_bucket",
        "predictor_samples_buffered",
        "predictor_samples_dropped_total",
        "predictor_model_reloads_total",
    ):
        assert name in text, name
    client.get("/no/such/route")
    assert metric("predictor_http_requests_total", route="<unmatched>", method="GET", status="404") >= 1


def test_predictions_are_finite_numbers(client) -> None:
    predictions = client.post(PREDICT, json={"instances": records(tiny_frame(10))}).json()["predictions"]
    assert np.isfinite(predictions).all()
