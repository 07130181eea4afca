"""Alertmanager's webhook body (version 4), validated before anything is decided.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config. Fields the controller does
not use (groupKey, externalURL, generatorURL, ...) are accepted and ignored, so a newer Alertmanager
that adds fields still gets through; a missing or mistyped field the controller needs is a 422 naming it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_ALERTS = 1000  # Alertmanager's `max_alerts` is unbounded by default; the chart sets 10


class Alert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: AwareDatetime  # Alertmanager's names
    endsAt: AwareDatetime | None = None  # "0001-01-01T00:00:00Z" while firing
    fingerprint: str = Field(pattern=r"^[0-9A-Za-z]{1,64}$")

    @field_validator("labels")
    @classmethod
    def _has_alertname(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("labels.alertname is required")
        return labels

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]


class Webhook(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    alerts: list[Alert] = Field(min_length=1, max_length=MAX_ALERTS)


def validation_detail(exc: ValidationError) -> list[dict[str, object]]:
    """Each problem with its field path (`alerts.0.fingerprint`), the message and pydantic's type."""
    return [
        {"loc": ".".join(map(str, e["loc"])) or "body", "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False)
    ]
