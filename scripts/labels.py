"""A label feed for the demo and the tests: send real bookings with ids, then their true prices as labels.

In production the true price of a booking is known after the stay and comes from the user's own
systems; here it comes from the dataset. The requests carry `X-Request-Id: <prefix>-<n>`, so the
prediction ids (`<prefix>-<n>:<row>`) are known to the feed the way a booking id would be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import cycle

import httpx

from scripts.traffic import labelled_records

MODEL = "hotel-adr"


@dataclass
class LabelledTraffic:
    """What was sent: one (prediction id, prediction, true value) per row, and the non-200 answers."""

    ids: list[str] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    actuals: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def labels(self) -> list[dict]:
        return [{"id": i, "actual": a} for i, a in zip(self.ids, self.actuals, strict=True)]


def send(
    urls: list[str],
    mode: str,
    *,
    rows: int,
    prefix: str,
    batch: int = 20,
    seed: int = 0,
    token: str | None = None,
) -> LabelledTraffic:
    """`rows` rows of the window in requests of `batch`, round-robin over the predictors (a Service would)."""
    records, actuals = labelled_records(mode, rows, seed)
    return send_records(urls, records, actuals, prefix=prefix, batch=batch, token=token)


def send_records(
    urls: list[str],
    records: list[dict],
    actuals: list[float],
    *,
    prefix: str,
    batch: int = 20,
    token: str | None = None,
) -> LabelledTraffic:
    """These feature rows, with their true values, in requests of `batch`, round-robin over the predictors."""
    sent = LabelledTraffic()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=30, headers=headers) as client:
        for n, (start, url) in enumerate(zip(range(0, len(records), batch), cycle(urls))):
            response = client.post(
                f"{url}/v1/models/{MODEL}:predict",
                json={"instances": records[start : start + batch]},
                headers={"X-Request-Id": f"{prefix}-{n}"},
            )
            if response.status_code != 200:
                sent.failures.append(f"{response.status_code}: {response.text[:200]}")
                continue
            body = response.json()
            sent.ids += body["prediction_ids"]
            sent.predictions += body["predictions"]
            sent.actuals += actuals[start : start + batch]
    return sent


def ledger_counts(urls: list[str]) -> dict[str, float]:
    """The predictors' `predictor_ledger_*` series from their /metrics, summed over pods and labels."""
    totals: dict[str, float] = {}
    for url in urls:
        for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
            if line.startswith("predictor_ledger_"):
                name = line.split("{")[0].split(" ")[0]
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def post_labels(
    url: str, labels: list[dict], *, chunk: int = 1000, token: str | None = None
) -> dict[str, int]:
    """POST the labels to the feedback route in chunks; the summed counts of the 202 answers."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    totals = {"stored": 0, "duplicates": 0, "replaced": 0, "matched": 0, "unmatched": 0}
    with httpx.Client(timeout=60, headers=headers) as client:
        for start in range(0, len(labels), chunk):
            response = client.post(
                f"{url}/v1/models/{MODEL}:feedback", json={"labels": labels[start : start + chunk]}
            )
            response.raise_for_status()
            body = response.json()
            for key in totals:
                totals[key] += body[key]
    return totals
