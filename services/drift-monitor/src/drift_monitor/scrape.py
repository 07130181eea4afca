"""Read the recent request samples of every predictor pod, concurrently.

Each pod keeps its own ring buffer of samples (`GET /v1/samples?since=<unix seconds>`, see
docs/interfaces.md). A pod that does not answer, or answers with something else than the contract
shape, is logged and counted; the run goes on with the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

SAMPLES_PATH = "/v1/samples"


@dataclass(frozen=True)
class Sample:
    """One predicted row as the predictor recorded it."""

    timestamp: float
    model_name: str
    model_version: str
    features: dict[str, Any]
    prediction: float


@dataclass
class ScrapeResult:
    """The samples of every pod that answered, and which pods did not (a failed pod does not fail the run)."""

    samples: list[Sample] = field(default_factory=list)
    pods_scraped: int = 0
    pods_failed: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    """Pod URL → why it could not be read."""


class InvalidResponse(Exception):
    """A pod answered, but not with the /v1/samples contract shape."""


def scrape_samples(targets: list[str], since: float, *, token: str | None, timeout: float) -> ScrapeResult:
    """Samples newer than `since` (unix seconds) from every target, merged and oldest first."""
    return asyncio.run(_scrape_all(targets, since, token=token, timeout=timeout))


async def _scrape_all(targets: list[str], since: float, *, token: str | None, timeout: float) -> ScrapeResult:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=timeout) as http:
        outcomes = await asyncio.gather(
            *(_scrape_one(http, url, since) for url in targets), return_exceptions=True
        )
    result = ScrapeResult()
    for url, outcome in zip(targets, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            reason = _describe(outcome)
            log.warning("predictor pod could not be scraped", extra={"pod": url, "error": reason})
            result.pods_failed += 1
            result.errors[url] = reason
        else:
            result.pods_scraped += 1
            result.samples.extend(outcome)
    result.samples.sort(key=lambda s: s.timestamp)
    return result


async def _scrape_one(http: httpx.AsyncClient, base_url: str, since: float) -> list[Sample]:
    response = await http.get(base_url + SAMPLES_PATH, params={"since": f"{since:.3f}"})
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict) or not isinstance(body.get("samples"), list):
        raise InvalidResponse("the body has no `samples` list")
    samples = [_parse_sample(raw) for raw in body["samples"]]
    if body.get("dropped_total"):
        # The ring buffer overflowed at some point; if it did within the window, the oldest samples are gone.
        log.info(
            "predictor sample buffer has dropped samples",
            extra={
                "pod": base_url,
                "dropped_total": body["dropped_total"],
                "buffer_size": body.get("buffer_size"),
            },
        )
    log.debug("scraped predictor pod", extra={"pod": base_url, "samples": len(samples)})
    return samples


def _parse_sample(raw: Any) -> Sample:
    try:
        return Sample(
            timestamp=float(raw["timestamp"]),
            model_name=str(raw["model_name"]),
            model_version=str(raw["model_version"]),
            features=dict(raw["features"]),
            prediction=float(raw["prediction"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidResponse(f"a sample does not follow the contract ({type(exc).__name__}: {exc})") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, json.JSONDecodeError):
        return f"the body is not JSON ({exc})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
