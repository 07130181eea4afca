"""The guard-rail state and the two places it lives: a JSON file (local) or a ConfigMap (Kubernetes).

The state is what must survive a restart of the controller: the run in progress, when the last one
finished and how, the start times of the last 24 hours (the daily cap), the alert fingerprints that
started a run (duplicates), and the most recent decisions (for people, via GET /v1/state).

Every change is a read-modify-write under the store's concurrency control: `update(change)` calls the
pure `change(state) -> (new_state, result)` with the current state and stores the new one, so two
controllers (a rollout's old and new pod) or two requests never both see "nothing running". The file
store holds an exclusive `flock` for the whole cycle; the ConfigMap store replaces the object with the
`resourceVersion` it read, and on a 409 conflict reads again and calls `change` again.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from trainer.controller.kube import API_TIMEOUT_SECONDS, api_error

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

T = TypeVar("T")
Trigger = Literal["quality_degraded", "drift_persisted"]
Outcome = Literal["succeeded", "failed"]
CONFIGMAP_KEY = "state.json"
CONFLICT_RETRIES = 10


class StateStoreError(Exception):
    """The state cannot be read or written: nothing was decided, the caller may try again."""


class RunningRun(BaseModel):
    name: str
    started_at: datetime
    trigger: Trigger
    alertname: str
    fingerprint: str
    launched: bool = False
    """False between reserving the run in the state and the launcher confirming it started."""


class RunRecord(BaseModel):
    """A run started in the last 24 hours (they count against the daily cap)."""

    name: str
    started_at: datetime
    trigger: Trigger
    alertname: str
    fingerprint: str
    outcome: Outcome | None = None
    finished_at: datetime | None = None


class DecisionRecord(BaseModel):
    at: datetime
    decision: Literal["started", "skipped", "dry_run"]
    reason: str
    alertname: str
    fingerprint: str
    run: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    detail: str | None = None


class GuardState(BaseModel):
    running: RunningRun | None = None
    last_run: str | None = None
    last_finished_at: datetime | None = None
    """When the last run was seen to end: the cooldown counts from here."""
    last_outcome: Outcome | None = None
    last_outcome_detail: str | None = None
    runs: list[RunRecord] = []
    """The runs started in the last 24 hours, oldest first (the daily cap)."""
    fingerprints: dict[str, datetime] = {}
    """Fingerprints of alerts that started a run in the last 7 days, with when: the same alert again is a duplicate."""
    decisions: list[DecisionRecord] = []
    """The latest decisions, oldest first (bounded)."""

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str | None, where: str) -> GuardState:
        if text is None or not text.strip():
            return cls()  # a fresh file or the chart's empty ConfigMap: nothing happened yet
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            # Never start over silently: that would reset the cooldown and the cap.
            first = exc.errors(include_url=False)[0]
            where_in = ".".join(map(str, first["loc"])) or "document"
            raise StateStoreError(
                f"{where} holds no valid retraining state ({where_in}: {first['msg']}); "
                "fix or delete it to start over"
            ) from exc


class StateStore(Protocol):
    def read(self) -> GuardState: ...

    def update(self, change: Callable[[GuardState], tuple[GuardState, T]]) -> T: ...

    def describe(self) -> str: ...


class FileStateStore:
    """A JSON file, replaced atomically (temporary file + rename); `<file>.lock` serialises writers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(f"{path.name}.lock")

    def describe(self) -> str:
        return f"file {self.path}"

    def read(self) -> GuardState:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            text = None
        except OSError as exc:
            raise StateStoreError(f"cannot read {self.path}: {exc.strerror}") from exc
        return GuardState.from_json(text, str(self.path))

    def update(self, change: Callable[[GuardState], tuple[GuardState, T]]) -> T:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateStoreError(f"cannot lock {self.lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.read()
            new, result = change(state)
            if new != state:
                self._write(new)
            return result
        finally:
            os.close(lock)  # releases the flock

    def _write(self, state: GuardState) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("w") as out:
                out.write(state.to_json())
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StateStoreError(f"cannot write {self.path}: {exc.strerror}") from exc


class ConfigMapStateStore:
    """The key `state.json` of a ConfigMap the chart creates (empty, kept across upgrades and uninstalls)."""

    def __init__(self, api: ApiClient, namespace: str, name: str) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.name = name
        self.uid: str | None = None
        """The ConfigMap's uid once read: Events name it, so `kubectl describe configmap` lists them."""

    def describe(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"

    def read(self) -> GuardState:
        return self._read()[1]

    def update(self, change: Callable[[GuardState], tuple[GuardState, T]]) -> T:
        from kubernetes.client.exceptions import ApiException

        for _ in range(CONFLICT_RETRIES):
            configmap, state = self._read()
            new, result = change(state)
            if new == state:
                return result
            configmap.data = {**(configmap.data or {}), CONFIGMAP_KEY: new.to_json()}
            try:  # metadata.resourceVersion is the one read: a concurrent writer makes this a 409
                self.core.replace_namespaced_config_map(
                    self.name, self.namespace, configmap, _request_timeout=API_TIMEOUT_SECONDS
                )
            except ApiException as exc:
                if exc.status == 409:
                    log.info("state changed concurrently; deciding again", extra={"store": self.describe()})
                    continue
                raise StateStoreError(f"cannot write {self.describe()}: {api_error(exc)}") from exc
            except Exception as exc:  # connection refused, timeout: urllib3's errors
                raise StateStoreError(f"cannot write {self.describe()}: {api_error(exc)}") from exc
            return result
        raise StateStoreError(f"{self.describe()} kept changing: {CONFLICT_RETRIES} conflicts in a row")

    def _read(self) -> tuple[Any, GuardState]:
        try:
            configmap = self.core.read_namespaced_config_map(
                self.name, self.namespace, _request_timeout=API_TIMEOUT_SECONDS
            )
        except Exception as exc:  # ApiException (404: the chart did not create it), or no connection
            raise StateStoreError(f"cannot read {self.describe()}: {api_error(exc)}") from exc
        self.uid = configmap.metadata.uid if configmap.metadata else None
        text = (configmap.data or {}).get(CONFIGMAP_KEY)
        return configmap, GuardState.from_json(text, f"{self.describe()} key {CONFIGMAP_KEY}")
