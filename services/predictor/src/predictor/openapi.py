"""OpenAPI with the served model's real fields.

The request schema depends on the model version loaded at run time, so the document is built on demand
(and cached per input schema): the predict body is the union of the three accepted shapes, each holding
records of the Pydantic model built from the MLflow signature.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from predictor.inference import InferenceService
from predictor.protocol import request_body_models
from predictor.schema import InputSchema

REF_TEMPLATE = "#/components/schemas/{model}"
_ANY_RECORD = {
    "type": "object",
    "description": "a record keyed by the model's input columns (model not loaded yet)",
}


def install_openapi(app: FastAPI, service: InferenceService, *, max_rows: int) -> None:
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        model = service.follower.current
        schema = model.schema if model else None
        if cache.get("schema") is not schema or "document" not in cache:
            cache.update(schema=schema, document=_document(app, service.follower.name, schema, max_rows))
        document: dict[str, Any] = cache["document"]
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _document(app: FastAPI, model_name: str, schema: InputSchema | None, max_rows: int) -> dict[str, Any]:
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(_request_schemas(schema, max_rows))
    for path, item in document["paths"].items():
        if path.startswith("/v1/models/{name}"):
            for operation in item.values():
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "name" and parameter["in"] == "path":
                        parameter["schema"] = {"type": "string", "enum": [model_name], "title": "Name"}
    return document


def _request_schemas(schema: InputSchema | None, max_rows: int) -> dict[str, Any]:
    if schema is None:
        records = {
            "type": "array",
            "items": _ANY_RECORD,
            "minItems": 1,
            "description": f"at most {max_rows} rows",
        }
        return {
            "PredictRequest": {
                "anyOf": [
                    {"type": "object", "properties": {"instances": records}, "required": ["instances"]},
                    {
                        "type": "object",
                        "properties": {"dataframe_records": records},
                        "required": ["dataframe_records"],
                    },
                ]
            }
        }
    models = request_body_models(schema, max_rows=max_rows)
    refs, definitions = models_json_schema([(m, "validation") for m in models], ref_template=REF_TEMPLATE)
    return {
        **definitions.get("$defs", {}),
        "PredictRequest": {"title": "PredictRequest", "anyOf": [refs[(m, "validation")] for m in models]},
    }
