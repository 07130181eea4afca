"""InputSchema: the record model and the frame come from the MLflow signature alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, DataType, Schema, TensorSpec
from pydantic import ValidationError

from predictor.errors import ModelLoadError
from predictor.schema import InputSchema
from tests.predictor.conftest import tiny_frame


def schema_of(*columns: ColSpec, extra: str = "forbid") -> InputSchema:
    return InputSchema.from_signature(ModelSignature(inputs=Schema(list(columns))), title="t", extra=extra)


def test_fields_types_and_optionality_come_from_the_signature() -> None:
    X = tiny_frame()
    schema = InputSchema.from_signature(infer_signature(X), title="tiny-adr")
    properties = schema.record_model.model_json_schema()
    assert schema.record_model.__name__ == "TinyAdrRecord"
    assert set(properties["properties"]) == {"nights", "base_price", "city"}
    assert properties["required"] == ["nights", "base_price"]  # city has missing values: optional
    assert properties["additionalProperties"] is False


def test_validate_records_fills_optional_columns_with_none() -> None:
    schema = schema_of(ColSpec(DataType.long, "n"), ColSpec(DataType.string, "s", required=False))
    assert schema.validate_records([{"n": 3}]) == [{"n": 3, "s": None}]


@pytest.mark.parametrize(
    ("record", "loc", "kind"),
    [
        ({"n": "3", "x": 1.0}, (0, "n"), "int_type"),  # no string → int coercion
        ({"n": 3.0, "x": 1.0}, (0, "n"), "int_type"),
        ({"n": True, "x": 1.0}, (0, "n"), "int_type"),
        ({"n": 2**63, "x": 1.0}, (0, "n"), "less_than_equal"),  # would overflow int64
        ({"n": 3, "x": "1.5"}, (0, "x"), "float_type"),
        ({"n": 3, "x": float("inf")}, (0, "x"), "finite_number"),
        ({"x": 1.0}, (0, "n"), "missing"),
        ({"n": 3, "x": 1.0, "extra": 1}, (0, "extra"), "extra_forbidden"),
    ],
)
def test_validate_records_names_the_field_at_fault(record: dict, loc: tuple, kind: str) -> None:
    schema = schema_of(ColSpec(DataType.long, "n"), ColSpec(DataType.double, "x"))
    with pytest.raises(ValidationError) as caught:
        schema.validate_records([record])
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(loc, kind)]


def test_extra_fields_can_be_ignored() -> None:
    schema = schema_of(ColSpec(DataType.long, "n"), extra="ignore")
    assert schema.validate_records([{"n": 1, "id": "abc"}]) == [{"n": 1}]


def test_column_names_that_are_not_identifiers_are_served_under_their_own_name() -> None:
    schema = schema_of(ColSpec(DataType.long, "room type"), ColSpec(DataType.string, "model_config"))
    rows = schema.validate_records([{"room type": 1, "model_config": "a"}])
    assert rows == [{"room type": 1, "model_config": "a"}]
    assert set(schema.record_model.model_json_schema()["properties"]) == {"room type", "model_config"}


def test_to_frame_matches_pandas_on_the_same_records() -> None:
    X = tiny_frame(20)
    schema = InputSchema.from_signature(infer_signature(X), title="t")
    rows = schema.validate_records(X.astype(object).where(X.notna(), None).to_dict(orient="records"))
    frame = schema.to_frame(rows)
    pd.testing.assert_frame_equal(frame, X)


def test_to_frame_uses_signature_dtypes_and_nan_for_missing_optional_numbers() -> None:
    schema = schema_of(
        ColSpec(DataType.integer, "i"),
        ColSpec(DataType.long, "n", required=False),
        ColSpec(DataType.float, "f"),
        ColSpec(DataType.boolean, "b"),
        ColSpec(DataType.datetime, "d"),
    )
    frame = schema.to_frame(
        schema.validate_records([{"i": 1, "n": None, "f": 1.5, "b": True, "d": "2024-05-01T10:00:00"}])
    )
    assert frame.dtypes.astype(str).to_dict() == {
        "i": "int32",
        "n": "float64",
        "f": "float32",
        "b": "bool",
        "d": "datetime64[ns]",
    }
    assert np.isnan(frame["n"][0])


def test_a_model_without_a_column_signature_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="no signature"):
        InputSchema.from_signature(None, title="t")
    tensor = ModelSignature(inputs=Schema([TensorSpec(np.dtype("float64"), (-1, 4))]))
    with pytest.raises(ModelLoadError, match="name its input columns"):
        InputSchema.from_signature(tensor, title="t")
    with pytest.raises(ModelLoadError, match="cannot serve"):
        schema_of(ColSpec(DataType.binary, "blob"))
