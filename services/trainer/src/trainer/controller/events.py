"""Decisions and run outcomes as Kubernetes Events on the state ConfigMap (`kubectl describe configmap
<fullname>-retrain-controller`, `kubectl get events`); outside a cluster, nothing (the log line
and the metric carry the same facts). An Event that cannot be written is logged, never an error."""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol

from trainer.controller.kube import API_TIMEOUT_SECONDS, api_error

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from trainer.controller.state import ConfigMapStateStore

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
COMPONENT = "retrain-controller"
MAX_MESSAGE = 1024  # the API's limit on an Event's note


class EventRecorder(Protocol):
    def record(self, reason: str, message: str, type_: EventType = "Normal") -> None: ...


class NoEvents:
    """The local launcher: decisions are log lines and metrics only."""

    def record(self, reason: str, message: str, type_: EventType = "Normal") -> None:
        return None


class KubernetesEvents:
    """core/v1 Events whose involvedObject is the state ConfigMap (with its uid, once the store read it)."""

    def __init__(self, api: ApiClient, store: ConfigMapStateStore) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api)
        self.store = store
        self.instance = os.environ.get("HOSTNAME") or socket.gethostname()  # the pod's name

    def record(self, reason: str, message: str, type_: EventType = "Normal") -> None:
        from kubernetes import client

        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{self.store.name}.", namespace=self.store.namespace),
            involved_object=client.V1ObjectReference(
                api_version="v1",
                kind="ConfigMap",
                name=self.store.name,
                namespace=self.store.namespace,
                uid=self.store.uid,
            ),
            reason=reason,
            message=message[:MAX_MESSAGE],
            type=type_,
            source=client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=self.instance,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self.core.create_namespaced_event(
                self.store.namespace, event, _request_timeout=API_TIMEOUT_SECONDS
            )
        except Exception as exc:
            log.warning("cannot record the Event %s: %s", reason, api_error(exc))
