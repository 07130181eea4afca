"""Predict bodies: KServe V1 `instances`, MLflow `dataframe_records` / `dataframe_split`."""

from __future__ import annotations

import orjson
import pytest
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema

from predictor.errors import BatchTooLarge, InvalidInput
from predictor.protocol import parse_predict_body
from predictor.schema import InputSchema

SCHEMA = InputSchema.from_signature(
    ModelSignature(
        inputs=Schema([ColSpec(DataType.long, "n"), ColSpec(DataType.string, "s", required=False)])
    ),
    title="t",
)
ROWS = [{"n": 1, "s": "a"}, {"n": 2, "s": None}]


def parse(body: object, max_rows: int = 10) -> list[dict]:
    return parse_predict_body(orjson.dumps(body), SCHEMA, max_rows=max_rows)


@pytest.mark.parametrize(
    "body",
    [
        {"instances": ROWS},
        {"dataframe_records": ROWS},
        {"dataframe_split": {"columns": ["n", "s"], "data": [[1, "a"], [2, None]]}},
    ],
)
def test_every_body_shape_gives_the_same_rows(body: dict) -> None:
    assert parse(body) == ROWS


def test_more_rows_than_the_maximum_is_413_before_validation() -> None:
    with pytest.raises(BatchTooLarge, match="3 rows"):
        parse({"instances": [{"bad": 1}] * 3}, max_rows=2)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not valid JSON"),
        ([1, 2], "exactly one of the keys"),
        ({"inputs": ROWS}, "exactly one of the keys"),
        ({"instances": ROWS, "dataframe_records": ROWS}, "exactly one of the keys"),
        ({"instances": []}, "non-empty list"),
        ({"instances": {"n": 1}}, "non-empty list"),
        ({"dataframe_split": {"columns": ["n", "n"], "data": [[1, 2]]}}, "distinct column names"),
        ({"dataframe_split": {"columns": ["n"], "data": [[1, 2]]}}, "one value per column"),
    ],
)
def test_malformed_bodies_are_422(body: object, message: str) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(InvalidInput, match=message):
        parse_predict_body(raw, SCHEMA, max_rows=10)


def test_invalid_records_list_every_fault_with_its_location() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse({"instances": [{"n": 1}, {"n": "x", "s": 3, "zip": 1}]})
    locs = [tuple(d["loc"]) for d in caught.value.detail]
    assert locs == [("instances", 1, "n"), ("instances", 1, "s"), ("instances", 1, "zip")]
    assert "instances.1.n" in str(caught.value)
