"""Kubernetes discovery with the real `kubernetes` client against a local HTTP server that answers
like the API server: EndpointSliceList JSON (discovery.k8s.io/v1), paginated with `metadata.continue`,
with ready, not-ready and unknown-readiness endpoints. No cluster is needed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from drift_monitor.config import Settings
from drift_monitor.discovery import discover_predictors, own_namespace
from drift_monitor.errors import ConfigurationError, DriftMonitorError
from drift_monitor.monitor import NothingToCheck, resolve_targets
from tests.drift_monitor.conftest import (
    HTTP_PORT,
    NAMESPACE,
    PREDICTOR_SERVICE,
    endpoint,
    endpoint_slice,
    endpoint_slice_list,
)

PAGES = {
    # First page: one slice, a ready pod, a pod still loading its model, and a terminating pod.
    None: {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSliceList",
        "metadata": {
            "resourceVersion": "4711",
            "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJzdGFydCI6Im1sb3BzLXByZWRpY3Rvci1hYmMxMlx1MDAwMCJ9",
            "remainingItemCount": 1,
        },
        "items": [
            endpoint_slice(
                "mlops-predictor-abc12",
                [
                    endpoint("10.244.0.11", ready=True, pod="mlops-predictor-7d9c-a"),
                    endpoint("10.244.0.12", ready=False, pod="mlops-predictor-7d9c-b"),
                ],
                HTTP_PORT,
            )
        ],
    },
    # Second page: another slice whose endpoint has no `ready` condition (read as ready) and one pod
    # listed in both slices (a slice being rebalanced), which must appear once.
    "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJzdGFydCI6Im1sb3BzLXByZWRpY3Rvci1hYmMxMlx1MDAwMCJ9": {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": "4711"},
        "items": [
            endpoint_slice(
                "mlops-predictor-def34",
                [
                    endpoint("10.244.0.13", ready=None, pod="mlops-predictor-7d9c-c"),
                    endpoint("10.244.0.11", ready=True, pod="mlops-predictor-7d9c-a"),
                ],
                HTTP_PORT,
            )
        ],
    },
}


@pytest.fixture
def api_server(fake_kube_api) -> Iterator[tuple]:
    fake = fake_kube_api(PAGES)
    with client.ApiClient(client.Configuration(host=fake.url)) as api:
        yield fake, api


def test_discovery_lists_ready_endpoints_across_pages(api_server) -> None:
    fake, api = api_server

    urls = discover_predictors(api, NAMESPACE, PREDICTOR_SERVICE, default_port=9999)

    assert urls == ["http://10.244.0.11:8080", "http://10.244.0.13:8080"]
    assert len(fake.queries) == 2
    assert all(
        q["labelSelector"] == [f"kubernetes.io/service-name={PREDICTOR_SERVICE}"] for q in fake.queries
    )
    assert "continue" not in fake.queries[0]
    assert fake.queries[1]["continue"] == [PAGES[None]["metadata"]["continue"]]


def test_discovery_uses_the_http_port_or_the_fallback(api_server) -> None:
    fake, api = api_server
    fake.pages = {
        None: {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSliceList",
            "metadata": {"resourceVersion": "1"},
            "items": [
                endpoint_slice(
                    "a",
                    [endpoint("10.0.0.1", ready=True, pod="a")],
                    [{"name": "metrics", "port": 9000}, {"name": "http", "port": 8081}],
                ),
                endpoint_slice("b", [endpoint("10.0.0.2", ready=True, pod="b")], []),
                endpoint_slice(
                    "c", [endpoint("fd00::3", ready=True, pod="c")], HTTP_PORT, address_type="IPv6"
                ),
            ],
        }
    }

    urls = discover_predictors(api, NAMESPACE, PREDICTOR_SERVICE, default_port=8080)

    assert urls == ["http://10.0.0.1:8081", "http://10.0.0.2:8080", "http://[fd00::3]:8080"]


@pytest.mark.parametrize(
    "items",
    [
        [endpoint_slice("x", [endpoint("10.0.0.9", ready=False, pod="x")], HTTP_PORT)],
        [endpoint_slice("placeholder", [], HTTP_PORT)],  # the Service selects no pod at all
        [],  # no such Service: the monitor may only list EndpointSlices, so it cannot tell
    ],
    ids=["pods-not-ready", "no-pods", "no-service"],
)
def test_no_ready_pod_means_nothing_to_check(fake_kube_api, items: list[dict]) -> None:
    fake = fake_kube_api({None: endpoint_slice_list(items)})
    settings = Settings(
        mlflow_tracking_uri="http://mlflow:5000", namespace=NAMESPACE, predictor_service=PREDICTOR_SERVICE
    )

    with (
        client.ApiClient(client.Configuration(host=fake.url)) as api,
        pytest.raises(NothingToCheck) as raised,
    ):
        resolve_targets(settings, lambda: api)

    assert str(raised.value) == (
        f"no ready predictor pods behind Service {PREDICTOR_SERVICE} in namespace {NAMESPACE}: nothing to check yet"
    )


def test_forbidden_names_the_missing_permission(api_server) -> None:
    fake, api = api_server
    fake.status = 403
    settings = Settings(
        mlflow_tracking_uri="http://mlflow:5000", namespace=NAMESPACE, predictor_service=PREDICTOR_SERVICE
    )

    with pytest.raises(DriftMonitorError, match=r"HTTP 403 .*list on endpointslices\.discovery\.k8s\.io"):
        resolve_targets(settings, lambda: api)


def test_targets_skip_discovery() -> None:
    def no_cluster() -> client.ApiClient:
        raise AssertionError("discovery must not run when targets are given")

    settings = Settings(mlflow_tracking_uri="http://mlflow:5000", targets="http://a:8080/, http://b:8080")

    assert resolve_targets(settings, no_cluster) == ["http://a:8080", "http://b:8080"]


def test_namespace_comes_from_the_service_account_mount(tmp_path) -> None:
    mounted = tmp_path / "namespace"
    mounted.write_text("mlops\n")

    assert own_namespace(mounted) == "mlops"
    with pytest.raises(ConfigurationError, match="DRIFT_MONITOR_NAMESPACE"):
        own_namespace(tmp_path / "missing")
