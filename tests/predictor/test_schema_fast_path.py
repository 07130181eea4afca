"""Issue 19's faster validation and frame building: the very rows, errors and frames as before.

validate_records' fast path against the record model, for any records:

`InputSchema.validate_with_pydantic` (the record model alone) is the reference; hypothesis feeds both
valid records with faults mixed in: wrong types, bools in int columns, ints in float columns, numbers on
and past the int32/int64/float32 limits, non-finite floats, None and missing keys in required and
optional columns, unknown keys (under "forbid" and "ignore"), shuffled keys, non-JSON Python values.
"""

from __future__ import annotations

import math
import re
import sys
from collections import OrderedDict
from datetime import datetime
from types import MappingProxyType
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema
from pydantic import ValidationError

from predictor.errors import InvalidInput
from predictor.protocol import parse_predict_body
from predictor.schema import InputSchema

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
FLOAT32_MAX = float(np.finfo(np.float32).max)
TYPES = [
    DataType.boolean, DataType.integer, DataType.long, DataType.float, DataType.double, DataType.string,
    DataType.datetime,
]  # fmt: skip
# A required and an optional column of every type the predictor serves; two names that need an alias.
COLUMNS = [
    ColSpec(t, f"{t.name}_{'optional' if optional else 'required'}", required=not optional)
    for t in TYPES
    for optional in (False, True)
] + [ColSpec(DataType.long, "room type"), ColSpec(DataType.string, "model_config", required=False)]
EXTRA_KEYS = ["extra", "column_12", "Long_required", "long_required "]  # never a column name

PROPERTY = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def schema_of(columns: list[ColSpec], extra: str) -> InputSchema:
    return InputSchema.from_signature(ModelSignature(inputs=Schema(columns)), title="t", extra=extra)


SCHEMAS = {extra: schema_of(COLUMNS, extra) for extra in ("forbid", "ignore")}


def limits(column: ColSpec) -> tuple[float, float]:
    if column.type == DataType.integer:
        return INT32
    if column.type == DataType.long:
        return INT64
    if column.type == DataType.float:
        return -FLOAT32_MAX, FLOAT32_MAX
    return -sys.float_info.max, sys.float_info.max


def valid_value(column: ColSpec) -> st.SearchStrategy[Any]:
    """A value the column accepts, often on the edge of what it accepts."""
    if column.type == DataType.boolean:
        return st.booleans()
    if column.type in (DataType.integer, DataType.long):
        low, high = (int(x) for x in limits(column))
        edges = [low, low + 1, high - 1, high, 0, -1, *([2**53 + 1, -(2**53) - 1] if high > 2**53 else [])]
        return st.integers(-1000, 1000) | st.integers(low, high) | st.sampled_from(edges)
    if column.type in (DataType.float, DataType.double):
        low, high = limits(column)
        edges = [high, low, 0.0, -0.0, 5e-324, -5e-324, 1e-300, 0.1, 0, 1, -7, 2**53, -(2**53)]
        return st.floats(low, high, allow_nan=False, allow_infinity=False) | st.sampled_from(edges)
    if column.type == DataType.datetime:
        return st.datetimes() | st.sampled_from(DATES)
    return st.text(max_size=8) | st.sampled_from(["", "a", "\ud800", "\x00", "é", "1", "true"])


DATES = ["2024-05-01T10:00:00", "2024-05-01", "2024-05-01T10:00:00+02:00", "2024-05-01 10:00:00.5Z", 0, 1.5e9]


def doubtful_value(column: ColSpec) -> st.SearchStrategy[Any]:
    """A value the column may well refuse: past its limits, another JSON type, a bool for a number; or
    an int too big for an exact float, which a float column takes (Pydantic makes the float)."""
    low, high = limits(column)
    past = [math.inf, -math.inf, math.nan, math.nextafter(high, math.inf), math.nextafter(low, -math.inf)]
    past += [2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**64 + 1, 2**1024]
    if column.type in (DataType.integer, DataType.long):
        past = [int(low) - 1, int(high) + 1, 2**64, -(2**70), 3.0, 1.5]
    elif column.type in (DataType.boolean, DataType.string):
        past = [0, 1, 1.0, "True"]
    elif column.type == DataType.datetime:
        past = ["2024-13-01", "yesterday", "", 10**20, -(10**20), math.nan, "2024-05-01T25:00:00"]
    return st.sampled_from([*past, True, False, "3", [], {}]) | st.integers() | st.floats()


ANY_JSON = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


class Text(str):
    """A str subclass: not JSON, and not the exact type the fast path takes."""


ANY_PYTHON = ANY_JSON | st.sampled_from(
    [np.int64(3), np.float64(1.5), np.bool_(True), Text("a"), b"a", datetime(2024, 1, 1), (1,), 1 + 2j]
)


@st.composite
def records(draw: st.DrawFn, schema: InputSchema, *, json_only: bool) -> list[Any]:
    """Valid records, then (most of the time) one fault, or faults here and there.

    A fault in a cell: left out, None, a doubtful value, any other value; in a record: an unknown key,
    not a record at all. Batches with a single fault are what catch a fast path that accepts too much.
    """
    other = ANY_JSON if json_only else ANY_PYTHON
    specs = schema_specs(schema)
    rng = draw(st.randoms(use_true_random=True))  # uniform rolls: hypothesis' own draws favour edges
    out: list[Any] = []
    for _ in range(draw(st.integers(0, 6))):
        record: dict[str, Any] = {}
        for spec in specs:
            if not spec.required and rng.random() < 0.15:
                if rng.random() < 0.5:
                    record[spec.name] = None  # else missing: both valid in an optional column
            else:
                record[spec.name] = draw(valid_value(spec))
        if rng.random() < 0.05:  # an unknown key: valid under "ignore"
            record[draw(st.sampled_from(EXTRA_KEYS))] = draw(other)
        out.append(record)
    faults = draw(st.sampled_from(["none", "one", "one", "one", "some"])) if out else "none"
    for _ in range({"none": 0, "one": 1, "some": draw(st.integers(2, 12))}[faults]):
        i = rng.randrange(len(out))
        if not isinstance(out[i], dict):
            continue
        spec = specs[rng.randrange(len(specs))]
        kind = draw(st.sampled_from(["missing", "none", "doubtful", "doubtful", "other", "extra", "record"]))
        if kind == "missing":
            out[i].pop(spec.name, None)
        elif kind == "none":
            out[i][spec.name] = None
        elif kind == "doubtful":
            out[i][spec.name] = draw(doubtful_value(spec))
        elif kind == "other":
            out[i][spec.name] = draw(other)
        elif kind == "extra":
            out[i][draw(st.sampled_from(EXTRA_KEYS))] = draw(other)
        elif not json_only:
            out[i] = draw(other)  # not a record at all
    for i, record in enumerate(out):
        if isinstance(record, dict) and rng.random() < 0.3:
            out[i] = {key: record[key] for key in draw(st.permutations(list(record)))}
    return out


def schema_specs(schema: InputSchema) -> list[ColSpec]:
    return [ColSpec(c.type, c.name, required=c.required) for c in schema.columns]


def outcome(validate: Any, given_records: Any) -> Any:
    """Rows down to key order, value types and float signs; or the error list, exactly."""
    try:
        rows = validate(given_records)
    except ValidationError as exc:
        return ("error", exc.errors(include_url=False))
    return ("rows", [[(k, type(v), repr(v)) for k, v in row.items()] for row in rows])


@pytest.mark.parametrize("extra", ["forbid", "ignore"])
@PROPERTY
@given(data=st.data())
def test_fast_path_gives_the_record_models_rows_and_errors(extra: str, data: st.DataObject) -> None:
    schema = SCHEMAS[extra]
    given_records = data.draw(records(schema, json_only=False))
    snapshot = repr(given_records)
    assert outcome(schema.validate_records, given_records) == outcome(
        schema.validate_with_pydantic, given_records
    )
    assert repr(given_records) == snapshot  # the records are not changed ...
    try:
        rows = schema.validate_records(given_records)
    except ValidationError:
        return
    assert not {id(row) for row in rows} & {id(record) for record in given_records}  # ... nor shared


@pytest.mark.parametrize("extra", ["forbid", "ignore"])
@PROPERTY
@given(data=st.data())
def test_predict_bodies_give_the_same_rows_and_422_as_the_record_model(
    extra: str, data: st.DataObject
) -> None:
    schema = SCHEMAS[extra]
    reference = schema_of(COLUMNS, extra)
    reference.validate_records = reference.validate_with_pydantic  # type: ignore[method-assign]
    body = {"dataframe_records": data.draw(records(schema, json_only=True))}
    try:
        raw = orjson.dumps(body)
    except TypeError:  # an int past 64 bits: no JSON body can carry it
        return

    def parse(s: InputSchema) -> Any:
        try:
            return (
                "rows",
                [
                    [(k, type(v), repr(v)) for k, v in r.items()]
                    for r in parse_predict_body(raw, s, max_rows=10)
                ],
            )
        except InvalidInput as exc:
            return ("422", str(exc), exc.detail)

    assert parse(schema) == parse(reference)


VALID = {
    "boolean_required": True, "boolean_optional": False, "integer_required": 7, "integer_optional": -7,
    "long_required": 2**40, "long_optional": 0, "float_required": 1.5, "float_optional": 2,
    "double_required": -0.25, "double_optional": 3, "string_required": "a", "string_optional": "",
    "datetime_required": "2024-05-01T10:00:00", "datetime_optional": datetime(2024, 5, 1),
    "room type": 1, "model_config": "m",
}  # fmt: skip
DOUBTFUL = [
    None, True, False, 0, 1, -1, INT32[1], INT32[1] + 1, INT32[0], INT32[0] - 1, 2**53, 2**53 + 1, -(2**53) - 1,
    INT64[1], INT64[1] + 1, INT64[0], INT64[0] - 1, 2**64, 2**1024, -(2**1024),
    0.0, -0.0, 1.5, 5e-324, FLOAT32_MAX, -FLOAT32_MAX, math.nextafter(FLOAT32_MAX, math.inf),
    math.nextafter(-FLOAT32_MAX, -math.inf), 1e308, sys.float_info.max, math.inf, -math.inf, math.nan,
    "", "1", "1.5", "true", "\ud800", [], [1], {}, {"a": 1}, b"a", Text("a"), np.int64(1), np.int32(1),
    np.float64(1.5), np.float32(1.5), np.bool_(True), datetime(2024, 1, 1), 1 + 2j,
    "2024-05-01", "2024-13-01", "2024-05-01T10:00:00+02:00", 1.5e9, 10**20,
]  # fmt: skip


@pytest.mark.parametrize("extra", ["forbid", "ignore"])
@pytest.mark.parametrize("column", list(VALID))
def test_one_doubtful_value_in_a_valid_batch_is_judged_as_the_record_model_does(
    extra: str, column: str
) -> None:
    schema = SCHEMAS[extra]
    assert outcome(schema.validate_records, [VALID]) == outcome(schema.validate_with_pydantic, [VALID])
    without = {k: v for k, v in VALID.items() if k != column}
    batches = [[VALID, without], [VALID, {**VALID, "extra": 1}], [VALID, {**VALID, column: [VALID]}]]
    batches += [[VALID, {**VALID, column: value}] for value in DOUBTFUL]
    batches += [
        [{**VALID, column: value}, dict(reversed({**VALID, column: value}.items()))] for value in DOUBTFUL
    ]
    for records_ in batches:
        assert outcome(schema.validate_records, records_) == outcome(schema.validate_with_pydantic, records_)


class Record(dict):  # type: ignore[type-arg]
    """A dict subclass: the record model's business, not the fast path's."""


@pytest.mark.parametrize("extra", ["forbid", "ignore"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: (VALID, VALID),  # a tuple
        lambda: iter([VALID, VALID]),  # read once: the fast path must not consume it
        lambda: (r for r in [VALID]),
        lambda: [VALID, Record(VALID)],
        lambda: [VALID, OrderedDict(VALID)],
        lambda: [VALID, MappingProxyType(VALID)],
        lambda: {"a": VALID},
        lambda: VALID,
        lambda: None,
    ],
)
def test_anything_but_a_list_of_dicts_is_judged_as_the_record_model_does(extra: str, make: Any) -> None:
    schema = SCHEMAS[extra]
    assert outcome(schema.validate_records, make()) == outcome(schema.validate_with_pydantic, make())


def test_plain_valid_records_do_not_need_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = schema_of(COLUMNS, "forbid")
    record = {
        "boolean_required": True, "integer_required": INT32[1], "long_required": INT64[0],
        "float_required": FLOAT32_MAX, "double_required": 5, "string_required": "s", "room type": 1,
        "float_optional": -1, "long_optional": None, "datetime_required": "2024-05-01T10:00:00",
    }  # fmt: skip
    expected = schema.validate_with_pydantic([record, dict(reversed(record.items()))])

    def unused(records: Any) -> Any:
        raise AssertionError("the record model was asked about plainly valid records")

    monkeypatch.setattr(schema, "validate_with_pydantic", unused)
    rows = schema.validate_records([record, dict(reversed(record.items()))])
    assert outcome(lambda _: rows, None) == outcome(lambda _: expected, None)
    assert type(rows[0]["double_required"]) is float and type(rows[0]["float_optional"]) is float


def frame_as_before(schema: InputSchema, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """`InputSchema.to_frame` as it was before issue 19 (one list per column, a None check on each)."""

    def column(values: list[Any], dtype_of: DataType) -> Any:
        dtype = {
            DataType.boolean: "bool", DataType.integer: "int32", DataType.long: "int64",
            DataType.float: "float32", DataType.double: "float64", DataType.string: "object",
        }.get(dtype_of)  # fmt: skip
        if dtype_of == DataType.datetime:
            return pd.to_datetime(values).to_numpy(dtype="datetime64[ns]")
        if np.dtype(dtype).kind in "iub" and None in values:
            return np.array(values, dtype="float64") if dtype != "bool" else np.array(values, dtype=object)
        return np.array(values, dtype=dtype)

    return pd.DataFrame(
        {c.name: column([row[c.name] for row in rows], c.type) for c in schema.columns}, copy=False
    )


@PROPERTY
@given(data=st.data())
def test_to_frame_gives_the_same_frame_as_before(data: st.DataObject) -> None:
    schema = SCHEMAS["ignore"]
    try:
        rows = schema.validate_records(data.draw(records(schema, json_only=False)))
    except ValidationError:
        assume(False)
    try:
        expected = frame_as_before(schema, rows)
    except (ValueError, OverflowError) as exc:  # dates pandas cannot hold (tz-aware and naive, past 2262)
        with pytest.raises(type(exc), match=re.escape(str(exc))):
            schema.to_frame(rows)
        return
    frame = schema.to_frame(rows)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert list(frame.dtypes) == list(expected.dtypes)


def test_to_frame_of_no_rows_has_every_column_and_dtype() -> None:
    schema = SCHEMAS["forbid"]
    pd.testing.assert_frame_equal(schema.to_frame([]), frame_as_before(schema, []), check_exact=True)
    one = schema_of([ColSpec(DataType.long, "n", required=False)], "forbid")
    rows = one.validate_records([{"n": 1}, {}])
    pd.testing.assert_frame_equal(one.to_frame(rows), frame_as_before(one, rows), check_exact=True)
