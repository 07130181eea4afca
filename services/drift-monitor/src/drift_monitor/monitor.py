"""One monitoring run: find the pods, read their samples, and judge each served model version."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from itertools import groupby
from typing import Any

import numpy as np
import pandas as pd
import urllib3.exceptions
from kubernetes import client as k8s
from mlflow import MlflowClient

from drift_monitor.config import Settings
from drift_monitor.discovery import discover_predictors, in_cluster_api, own_namespace
from drift_monitor.errors import DriftMonitorError, NoTargets
from drift_monitor.evaluate import evaluate_version
from drift_monitor.mlflow_health import wait_for_mlflow
from drift_monitor.reference import load_reference
from drift_monitor.report import RunReport, VersionReport
from drift_monitor.scrape import Sample, scrape_samples

log = logging.getLogger(__name__)


class NothingToCheck(Exception):
    """Not an error: no predictor pod is ready yet (a fresh install before the first model), so the
    run ends cleanly without a verdict instead of failing."""


def run(
    settings: Settings,
    *,
    started_at: float | None = None,
    kube_api: Callable[[], k8s.ApiClient] = in_cluster_api,
) -> RunReport:
    """Everything but the output; raises DriftMonitorError when the run cannot complete.

    The window is the `settings.window_seconds` before `started_at` (default: now).
    """
    started_at = started_at if started_at is not None else time.time()
    try:
        targets = resolve_targets(settings, kube_api)
    except NothingToCheck as exc:
        return _report(
            settings,
            started_at,
            pods_scraped=0,
            pods_failed=0,
            pod_errors={},
            versions=[],
            skip_reason=str(exc),
        )
    wait_for_mlflow(settings.mlflow_tracking_uri, settings.mlflow_wait_seconds)

    token = settings.predictor_api_token.get_secret_value() if settings.predictor_api_token else None
    scraped = scrape_samples(
        targets,
        since=started_at - settings.window_seconds,
        token=token,
        timeout=settings.scrape_timeout_seconds,
    )
    if scraped.pods_scraped == 0:
        first_url, first_error = next(iter(scraped.errors.items()))
        raise NoTargets(
            f"none of the {len(targets)} predictor pod(s) answered, e.g. {first_url}: {first_error}"
        )
    samples = [s for s in scraped.samples if s.model_name == settings.model_name]
    if len(samples) < len(scraped.samples):
        log.warning(
            "samples of other models ignored",
            extra={"model_name": settings.model_name, "samples": len(scraped.samples) - len(samples)},
        )
    if not samples:
        log.warning("no samples in the window", extra={"window_seconds": settings.window_seconds})

    mlflow = MlflowClient(settings.mlflow_tracking_uri)
    versions = [
        _evaluate(mlflow, settings, version, version_samples)
        for version, version_samples in by_version(samples).items()
    ]
    return _report(
        settings,
        started_at,
        pods_scraped=scraped.pods_scraped,
        pods_failed=scraped.pods_failed,
        pod_errors=scraped.errors,
        versions=versions,
        samples_skipped=len(scraped.samples) - len(samples),
    )


def resolve_targets(settings: Settings, kube_api: Callable[[], k8s.ApiClient]) -> list[str]:
    """The configured URLs, or the ready pods of the predictor Service.

    Configured URLs are never "nothing to check": if none answers, the run fails. Discovery cannot tell
    a Service without ready pods from a missing one (the monitor may only list EndpointSlices), so
    both are a skip; a wrong DRIFT_MONITOR_PREDICTOR_SERVICE shows as DriftMonitorSkipping.
    """
    if settings.targets:
        return settings.targets
    api = kube_api()
    namespace = settings.namespace or own_namespace()
    try:
        urls = discover_predictors(api, namespace, settings.predictor_service, settings.predictor_port)
    except k8s.ApiException as exc:
        raise DriftMonitorError(
            f"cannot list the EndpointSlices of Service {settings.predictor_service} in namespace {namespace}: "
            f"HTTP {exc.status} {exc.reason} (the ServiceAccount needs list on endpointslices.discovery.k8s.io)"
        ) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise DriftMonitorError(f"the Kubernetes API is unreachable ({exc})") from exc
    if not urls:
        raise NothingToCheck(
            f"no ready predictor pods behind Service {settings.predictor_service} in namespace {namespace}: "
            "nothing to check yet"
        )
    return urls


def _report(settings: Settings, started_at: float, **outcome: Any) -> RunReport:
    """A report ending now: what the run checked (`outcome`) beside the settings it checked with."""
    return RunReport(
        started_at=started_at,
        finished_at=time.time(),
        window_seconds=settings.window_seconds,
        p_value=settings.p_value,
        correction=settings.correction,
        min_samples=settings.min_samples,
        **outcome,
    )


def by_version(samples: list[Sample]) -> dict[str, list[Sample]]:
    """Samples grouped by the model version that answered them (a rollout serves two at once)."""
    ordered = sorted(samples, key=lambda s: s.model_version)
    return {version: list(group) for version, group in groupby(ordered, key=lambda s: s.model_version)}


def _evaluate(mlflow: MlflowClient, settings: Settings, version: str, samples: list[Sample]) -> VersionReport:
    reference = load_reference(mlflow, settings.model_name, version)
    features = pd.DataFrame.from_records([s.features for s in samples])
    predictions = np.array([s.prediction for s in samples], dtype="float64")
    return evaluate_version(
        reference,
        features,
        predictions,
        min_samples=settings.min_samples,
        p_value=settings.p_value,
        correction=settings.correction,
    )
