"""Find the predictor pods through the Kubernetes API: the EndpointSlices of the predictor Service.

EndpointSlices (discovery.k8s.io/v1) are what kube-proxy itself reads. Each slice lists endpoints
(pod addresses) with a `ready` condition and the Service's ports; a Service with many pods has
several slices, all labelled `kubernetes.io/service-name=<service>`. Only ready endpoints are
returned: a pod that is not ready has no model loaded and no samples worth reading.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kubernetes import client, config

from drift_monitor.errors import ConfigurationError

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
PAGE_SIZE = 100
PORT_NAME = "http"


def in_cluster_api() -> client.ApiClient:
    """An API client with the pod's service-account credentials."""
    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise ConfigurationError(
            f"not running in a Kubernetes pod ({exc}); pass --targets URL ... or set DRIFT_MONITOR_TARGETS"
        ) from exc
    return client.ApiClient()


def own_namespace(namespace_file: Path = NAMESPACE_FILE) -> str:
    """The namespace this pod runs in, as mounted with its service-account token."""
    try:
        return namespace_file.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {namespace_file}; set DRIFT_MONITOR_NAMESPACE") from exc


def discover_predictors(api: client.ApiClient, namespace: str, service: str, default_port: int) -> list[str]:
    """Base URLs (`http://<ip>:<port>`) of the ready endpoints of `service`, in a stable order."""
    discovery = client.DiscoveryV1Api(api)
    urls: set[str] = set()
    slices = 0  # 0: no such Service (one without pods still gets an empty placeholder slice)
    token: str | None = None
    while True:
        page = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"{SERVICE_NAME_LABEL}={service}", limit=PAGE_SIZE, _continue=token
        )
        slices += len(page.items)
        for endpoint_slice in page.items:
            urls.update(_ready_urls(endpoint_slice, default_port))
        token = page.metadata._continue if page.metadata else None
        if not token:
            break
    log.info(
        "discovered predictor pods",
        extra={"namespace": namespace, "service": service, "endpoint_slices": slices, "pods": len(urls)},
    )
    return sorted(urls)


def _ready_urls(endpoint_slice: client.V1EndpointSlice, default_port: int) -> list[str]:
    port = _http_port(endpoint_slice.ports or [], default_port)
    ipv6 = endpoint_slice.address_type == "IPv6"
    urls = []
    for endpoint in endpoint_slice.endpoints or []:
        # The API says a missing `ready` means "unknown", to be read as ready.
        if endpoint.conditions is not None and endpoint.conditions.ready is False:
            continue
        for address in endpoint.addresses:
            host = f"[{address}]" if ipv6 else address
            urls.append(f"http://{host}:{port}")
    return urls


def _http_port(ports: list[client.DiscoveryV1EndpointPort], default_port: int) -> int:
    """The port named `http`, else the only port, else the configured one."""
    named = [p.port for p in ports if p.name == PORT_NAME and p.port]
    if named:
        return named[0]
    if len(ports) == 1 and ports[0].port:
        return ports[0].port
    return default_port
