"""Kubernetes discovery with the real `kubernetes` client against a local HTTP server that answers
like the API server: EndpointSliceList JSON (discovery.k8s.io/v1), paginated with `metadata.continue`,
with ready, not-ready and unknown-readiness endpoints. No cluster is needed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from drift_monitor.config import Settings
from drift_monitor.discovery import discover_predictors, own_namespace
from drift_monitor.errors import ConfigurationError, DriftMonitorError, NoTargets
from drift_monitor.monitor import resolve_targets
from tests.fakehttp import serve_json, server_url

NAMESPACE = "mlops"
SERVICE = "mlops-predictor"
LIST_PATH = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"


def endpoint_slice(name: str, endpoints: list[dict], ports: list[dict], address_type: str = "IPv4") -> dict:
    return {
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": SERVICE,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Service", "name": SERVICE, "uid": "8c1f", "controller": True}
            ],
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports,
    }


def endpoint(ip: str, *, ready: bool | None, pod: str) -> dict:
    conditions = {} if ready is None else {"ready": ready, "serving": ready, "terminating": False}
    return {
        "addresses": [ip],
        "conditions": conditions,
        "nodeName": "minikube",
        "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": pod, "uid": f"uid-{pod}"},
    }


HTTP_PORT = [{"name": "http", "protocol": "TCP", "port": 8080}]
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


class FakeApiServer:
    def __init__(self, pages: dict[str | None, dict]) -> None:
        self.pages = pages
        self.queries: list[dict[str, list[str]]] = []
        self.status = 200

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        self.queries.append(query)
        if self.status != 200:
            return self.status, {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Forbidden",
                "code": self.status,
            }
        if path != LIST_PATH:
            return 404, {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
            }
        return 200, self.pages[query.get("continue", [None])[0]]


@pytest.fixture
def api_server() -> Iterator[tuple[FakeApiServer, client.ApiClient]]:
    fake = FakeApiServer(PAGES)
    server = serve_json(lambda path, query, _authorization: fake.answer(path, query))
    configuration = client.Configuration(host=server_url(server))
    with client.ApiClient(configuration) as api:
        yield fake, api
    server.shutdown()
    server.server_close()


def test_discovery_lists_ready_endpoints_across_pages(api_server) -> None:
    fake, api = api_server

    urls = discover_predictors(api, NAMESPACE, SERVICE, default_port=9999)

    assert urls == ["http://10.244.0.11:8080", "http://10.244.0.13:8080"]
    assert len(fake.queries) == 2
    assert all(q["labelSelector"] == [f"kubernetes.io/service-name={SERVICE}"] for q in fake.queries)
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

    urls = discover_predictors(api, NAMESPACE, SERVICE, default_port=8080)

    assert urls == ["http://10.0.0.1:8081", "http://10.0.0.2:8080", "http://[fd00::3]:8080"]


def test_no_ready_pod_is_a_clear_error(api_server) -> None:
    fake, api = api_server
    fake.pages = {
        None: {
            **PAGES[None],
            "metadata": {},
            "items": [endpoint_slice("x", [endpoint("10.0.0.9", ready=False, pod="x")], HTTP_PORT)],
        }
    }
    settings = Settings(
        mlflow_tracking_uri="http://mlflow:5000", namespace=NAMESPACE, predictor_service=SERVICE
    )

    with pytest.raises(
        NoTargets, match=f"no ready predictor pods: Service {SERVICE} in namespace {NAMESPACE}"
    ):
        resolve_targets(settings, lambda: api)


def test_forbidden_names_the_missing_permission(api_server) -> None:
    fake, api = api_server
    fake.status = 403
    settings = Settings(
        mlflow_tracking_uri="http://mlflow:5000", namespace=NAMESPACE, predictor_service=SERVICE
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
