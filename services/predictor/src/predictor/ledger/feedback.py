"""Labels sent back by clients: the feedback body's shape, its validation, and the reply.

The same `LabelIn` model validates the feedback route's body and every row of `predictor labels import`,
so a label is accepted or rejected the same way on both paths.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from predictor.errors import BatchTooLarge, InvalidInput
from predictor.ledger.store import Label, LabelOutcome

UNMATCHED_IDS_SHOWN = 100


class LabelIn(BaseModel):
    """The true value of one predicted row."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        pattern=r"^[A-Za-z0-9._:\-]{1,200}$",  # request ids' alphabet (middleware.py) plus ":<row>"
        description="a prediction id from a predict response",
    )
    # Strict: a JSON number only (not "12.5", not true), as the schema says; the file import converts
    # its text cells first (labels_import.py).
    actual: float = Field(
        strict=True,
        allow_inf_nan=False,
        ge=-1e12,  # bounded: one absurd value must not overflow the monitor's squared errors
        le=1e12,
        description="the true value, in the unit of the prediction",
    )
    time: AwareDatetime | None = Field(
        None, description="when the true value was observed (RFC 3339 with a time zone); optional"
    )

    @field_validator("time", mode="before")
    @classmethod
    def _rfc3339_text(cls, value: object) -> object:
        """A string (or a datetime, from a Parquet file); pydantic would also read a number as Unix time."""
        if value is None or isinstance(value, str | datetime):
            return value
        raise ValueError("expected an RFC 3339 date-time string with a time zone")

    @field_validator("time")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        """Stored in UTC; a time the conversion overflows (year 1 with a positive offset) is refused."""
        try:
            return None if value is None else value.astimezone(UTC)
        except OverflowError:
            raise ValueError("the time is out of range once converted to UTC") from None

    def to_label(self) -> Label:
        return Label(self.id, self.actual, self.time)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[LabelIn] = Field(min_length=1, description="one entry per labelled prediction")


class FeedbackResponse(BaseModel):
    """202: every label below is stored durably. Re-sending an id replaces its label (last write wins)."""

    stored: int = Field(description="distinct ids written, new or replaced")
    duplicates: int = Field(description="repeats of an id within this request; the last one was kept")
    replaced: int = Field(description="ids that already had a label, now overwritten")
    matched: int = Field(description="ids whose prediction is in the ledger")
    unmatched: int = Field(
        description="ids with no prediction in the ledger (yet): not sampled, not written yet, or unknown; "
        "kept, and joined if the prediction arrives"
    )
    unmatched_ids: list[str] = Field(description=f"the first {UNMATCHED_IDS_SHOWN} unmatched ids")


def parse_feedback(body: bytes, *, max_labels: int) -> list[Label]:
    """The labels of a feedback body; 422 naming the field, 413 past `max_labels`."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    if (
        isinstance(payload, dict)
        and isinstance(payload.get("labels"), list)
        and len(payload["labels"]) > max_labels
    ):
        raise BatchTooLarge(
            f"{len(payload['labels'])} labels in one request; the maximum is {max_labels} "
            "(PREDICTOR_FEEDBACK_MAX_LABELS; `predictor labels import` loads files of any size)"
        )
    try:
        request = FeedbackRequest.model_validate(payload)
    except ValidationError as exc:
        detail = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        shown = "; ".join(f"{'.'.join(map(str, d['loc'])) or 'body'}: {d['msg']}" for d in detail[:10])
        raise InvalidInput(f"invalid feedback: {shown}", detail=detail) from None
    return [label.to_label() for label in request.labels]


def feedback_response(outcome: LabelOutcome) -> dict[str, Any]:
    return {
        "stored": outcome.stored,
        "duplicates": outcome.duplicates,
        "replaced": outcome.replaced,
        "matched": outcome.matched,
        "unmatched": len(outcome.unmatched_ids),
        "unmatched_ids": outcome.unmatched_ids[:UNMATCHED_IDS_SHOWN],
    }


def request_body_schema() -> dict[str, Any]:
    """The feedback body's JSON schema, self-contained (inlined into the OpenAPI operation)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["labels"],
        "properties": {
            "labels": {"type": "array", "minItems": 1, "items": LabelIn.model_json_schema()},
        },
    }
