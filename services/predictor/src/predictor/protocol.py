"""Prediction request bodies: KServe V1 `instances` and MLflow `dataframe_records` / `dataframe_split`.

`parse_predict_body` turns the raw bytes into validated rows (or raises 422/413 naming what is wrong);
`request_body_models` builds the matching Pydantic models, for OpenAPI only.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from predictor.errors import BatchTooLarge, InvalidInput
from predictor.schema import InputSchema

INSTANCES = "instances"
DATAFRAME_RECORDS = "dataframe_records"
DATAFRAME_SPLIT = "dataframe_split"
BODY_KEYS = (INSTANCES, DATAFRAME_RECORDS, DATAFRAME_SPLIT)


def parse_predict_body(raw: bytes, schema: InputSchema, *, max_rows: int) -> list[dict[str, Any]]:
    """Validated rows of a predict body; checks the row count before validating any row."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in BODY_KEYS:
        keys = sorted(body) if isinstance(body, dict) else type(body).__name__
        raise InvalidInput(
            f"the body must be an object with exactly one of the keys {list(BODY_KEYS)}; got {keys}"
        )
    key, payload = next(iter(body.items()))
    records = _split_to_records(payload) if key == DATAFRAME_SPLIT else payload
    if not isinstance(records, list) or not records:
        raise InvalidInput(
            f"`{key}` must be a non-empty list of records", detail=[_error((key,), "a non-empty list")]
        )
    if len(records) > max_rows:
        raise BatchTooLarge(
            f"{len(records)} rows in one request; the maximum is {max_rows} (PREDICTOR_MAX_BATCH_SIZE)"
        )
    try:
        return schema.validate_records(records)
    except ValidationError as exc:
        where = key if key != DATAFRAME_SPLIT else f"{DATAFRAME_SPLIT}.data"
        detail = [
            {"loc": [where, *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise InvalidInput(_summary(detail), detail=detail) from None


def _split_to_records(payload: Any) -> list[dict[str, Any]]:
    """`{"columns": [...], "data": [[...], ...]}` (pandas `orient="split"`) → records."""
    if not isinstance(payload, dict) or not isinstance(payload.get("columns"), list) or "data" not in payload:
        raise InvalidInput(
            "`dataframe_split` must be an object with `columns` (list of names) and `data` (list of rows)"
        )
    columns, data = payload["columns"], payload["data"]
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        raise InvalidInput("`dataframe_split.columns` must be distinct column names")
    if not isinstance(data, list):
        raise InvalidInput("`dataframe_split.data` must be a list of rows")
    bad = [i for i, row in enumerate(data) if not isinstance(row, list) or len(row) != len(columns)]
    if bad:
        raise InvalidInput(
            f"`dataframe_split.data` rows {bad[:10]} do not have one value per column ({len(columns)})"
        )
    return [dict(zip(columns, row, strict=True)) for row in data]


def _error(loc: tuple[Any, ...], expected: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": f"expected {expected}", "type": "invalid_shape"}


def _summary(detail: list[dict[str, Any]], shown: int = 10) -> str:
    parts = [f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in detail[:shown]]
    more = f" (and {len(detail) - shown} more)" if len(detail) > shown else ""
    return "invalid input: " + "; ".join(parts) + more


def request_body_models(schema: InputSchema, *, max_rows: int) -> list[type[BaseModel]]:
    """The three accepted body shapes as Pydantic models, with the model's real record fields."""
    records = list[schema.record_model]  # type: ignore[name-defined]  # a model built at runtime from the signature
    # The row limit is a description, not `maxItems`: past it the answer is 413, not a validation error.
    limit = f"one record per row, at most {max_rows} rows (PREDICTOR_MAX_BATCH_SIZE; more → 413)"
    rows = Field(..., min_length=1, description=limit)
    forbid = ConfigDict(extra="forbid")
    split = create_model(
        "DataframeSplit",
        __config__=forbid,
        columns=(list[str], Field(..., description="column names, as in the signature")),
        data=(
            list[list[Any]],
            Field(..., min_length=1, description=f"rows of values in `columns` order; {limit}"),
        ),
    )
    return [
        create_model("InstancesRequest", __config__=forbid, instances=(records, rows)),
        create_model("DataframeRecordsRequest", __config__=forbid, dataframe_records=(records, rows)),
        create_model("DataframeSplitRequest", __config__=forbid, dataframe_split=(split, ...)),
    ]
