"""The Kubernetes API as the controller uses it: in-cluster credentials, its own namespace, and
API errors as one line (`409 Conflict: jobs.batch "x" already exists`), never a dump of the response."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
API_TIMEOUT_SECONDS = 10


class KubernetesUnavailable(Exception):
    """Not in a pod, or the pod's namespace is unknown: the kubernetes launcher cannot start."""


def in_cluster_api() -> ApiClient:
    """An API client with the pod's service-account credentials."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise KubernetesUnavailable(
            f"not running in a Kubernetes pod ({exc}); use RETRAINING_LAUNCHER=local outside a cluster"
        ) from exc
    return client.ApiClient()


def own_namespace(namespace_file: Path = NAMESPACE_FILE) -> str:
    """The namespace this pod runs in, as mounted with its service-account token."""
    try:
        return namespace_file.read_text().strip()
    except OSError as exc:
        raise KubernetesUnavailable(f"cannot read {namespace_file}; set RETRAINING_NAMESPACE") from exc


def api_error(exc: BaseException) -> str:
    """An ApiException as `<status> <reason>: <Status.message>`; any other error as its text."""
    status, reason, body = (getattr(exc, name, None) for name in ("status", "reason", "body"))
    if status is None:
        return f"{type(exc).__name__}: {exc}"
    message = ""
    if isinstance(body, str | bytes) and body:
        try:
            message = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError):
            message = ""
    return f"{status} {reason}" + (f": {message}" if message else "")
