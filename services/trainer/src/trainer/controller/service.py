"""One webhook from end to end: decide each alert under the store's concurrency control, start the run
if one was decided, and report every decision (log line, metric, Event); and learn how a run ended.

A started run is first reserved in the state (so no other request or controller can start one), then
launched, then confirmed; a failed launch gives the reservation back and becomes `skipped/launch_failed`.
One lock serialises this process's decisions and status checks; the store serialises processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from trainer.controller import decide as rails
from trainer.controller import metrics
from trainer.controller.config import ControllerSettings
from trainer.controller.decide import Decision
from trainer.controller.events import EventRecorder, EventType, KubernetesEvents, NoEvents
from trainer.controller.launchers import (
    AlertRef,
    KubernetesLauncher,
    Launcher,
    LaunchError,
    LocalLauncher,
    StatusUnavailable,
)
from trainer.controller.state import (
    ConfigMapStateStore,
    FileStateStore,
    GuardState,
    Outcome,
    StateStore,
    StateStoreError,
)
from trainer.controller.webhook import Alert, Webhook

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

T = TypeVar("T")
log = logging.getLogger("trainer.controller")

Clock = Callable[[], datetime]
# A run reserved but not confirmed (its controller died between the two) counts as lost only after
# this long: another controller may be creating its Job right now.
LAUNCH_GRACE = timedelta(minutes=5)

EVENT_REASONS: dict[str, tuple[str, EventType]] = {
    "started": ("RetrainStarted", "Normal"),
    "skipped": ("RetrainSkipped", "Normal"),
    "dry_run": ("RetrainDryRun", "Normal"),
}


def utc_now() -> datetime:
    return datetime.now(UTC)


class RetrainService:
    def __init__(
        self,
        settings: ControllerSettings,
        store: StateStore,
        launcher: Launcher,
        events: EventRecorder,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.store = store
        self.launcher = launcher
        self.events = events
        self.clock = clock
        self._lock = threading.Lock()
        self.store_error: str | None = None
        """The last state-store failure, None once the store answered again (readiness)."""

    # --------------------------------------------------------------------------- webhooks
    def handle(self, webhook: Webhook) -> list[Decision]:
        """Decide every alert of `webhook` in order; at most one run starts. StateStoreError: nothing
        more was decided (the decisions already stored stand; Alertmanager's retry sees them)."""
        with self._lock:
            self._refresh_running()
            decisions: list[Decision] = []
            dry_run_pending: Decision | None = None
            for alert in webhook.alerts:
                decision = self._decide(alert, dry_run_pending)
                if decision.decision == "dry_run" and dry_run_pending is None:
                    dry_run_pending = decision
                self._report(decision)
                decisions.append(decision)
            return decisions

    def _decide(self, alert: Alert, dry_run_pending: Decision | None) -> Decision:
        now = self.clock()

        def change(state: GuardState) -> tuple[GuardState, Decision]:
            view = state if dry_run_pending is None else rails.would_run(state, dry_run_pending, now)
            decision = rails.decide(view, alert, now, self.settings)
            if decision.decision == "started":
                decision = replace(decision, run=self.launcher.run_name(now))
            return rails.record(state, decision, now), decision

        decision = self._update(change)
        if decision.decision != "started":
            return decision
        assert decision.run is not None
        try:
            self.launcher.launch(decision.run, AlertRef(alert.alertname, alert.fingerprint))
        except Exception as exc:  # LaunchError, or a launcher bug: either way nothing runs
            detail = str(exc) if isinstance(exc, LaunchError) else f"{type(exc).__name__}: {exc}"
            started = decision
            return self._update(lambda state: rails.cancel_launch(state, started, detail))
        run = decision.run
        try:
            self._update(lambda state: (rails.confirm_launch(state, run), None))
        except StateStoreError as exc:  # the run is running all the same; the status check finds it
            log.error("run %s started but the state store failed to confirm it: %s", run, exc)
        return decision

    # ---------------------------------------------------------------------- run status
    def check_running(self) -> GuardState:
        """Learn whether the running run ended (the periodic check); returns the state as it is now."""
        with self._lock:
            return self._refresh_running()

    def _refresh_running(self) -> GuardState:
        state = self._read()
        running = state.running
        metrics.RUNNING.set(0 if running is None else 1)
        if running is None:
            return state
        try:
            status = self.launcher.status(running.name)
        except StatusUnavailable as exc:
            log.warning("cannot tell whether run %s ended: %s", running.name, exc)
            return state
        now = self.clock()
        if status.state == "running":
            return state
        if status.state == "unknown" and not running.launched and now - running.started_at < LAUNCH_GRACE:
            return state  # reserved a moment ago, maybe by another controller still launching it
        outcome: Outcome = "succeeded" if status.state == "succeeded" else "failed"
        detail = status.detail if status.state != "unknown" else f"the run vanished: {status.detail}"
        name = running.name

        def end(current: GuardState) -> tuple[GuardState, GuardState]:
            new = rails.finish(current, name, outcome, detail, now)
            return new, new

        state = self._update(end)
        metrics.RUNNING.set(0 if state.running is None else 1)
        metrics.RUNS.labels(outcome).inc()
        fields = {
            "run": name,
            "outcome": outcome,
            "trigger": running.trigger,
            "alertname": running.alertname,
            "fingerprint": running.fingerprint,
            "duration_seconds": round((now - running.started_at).total_seconds(), 1),
        }
        if outcome == "succeeded":
            log.info("retrain run %s succeeded: %s", name, detail, extra=fields)
            self.events.record("RetrainRunSucceeded", f"run {name} succeeded: {detail}")
        else:
            log.error("retrain run %s failed: %s", name, detail, extra=fields)
            self.events.record("RetrainRunFailed", f"run {name} failed: {detail}", "Warning")
        return state

    def state(self) -> GuardState:
        return self._read()

    # -------------------------------------------------------------------------- helpers
    def _report(self, decision: Decision) -> None:
        metrics.DECISIONS.labels(decision.decision, decision.reason).inc()
        level = logging.WARNING if decision.reason == "launch_failed" else logging.INFO
        message = _event_message(decision)
        log.log(level, "retrain decision %s", message, extra=decision.as_dict())
        reason, type_ = EVENT_REASONS[decision.decision]
        if decision.reason == "launch_failed":
            type_ = "Warning"
        self.events.record(reason, message, type_)

    def _read(self) -> GuardState:
        return self._store_call(self.store.read)

    def _update(self, change: Callable[[GuardState], tuple[GuardState, T]]) -> T:
        return self._store_call(lambda: self.store.update(change))

    def _store_call(self, call: Callable[[], T]) -> T:
        try:
            result = call()
        except StateStoreError as exc:
            self.store_error = str(exc)
            raise
        self.store_error = None
        return result


def _event_message(decision: Decision) -> str:
    model = f" {decision.model_name}" if decision.model_name else ""
    if decision.model_version:
        model += f" v{decision.model_version}"
    text = f"{decision.decision}/{decision.reason}: alert {decision.alertname}{model} (fingerprint {decision.fingerprint})"
    if decision.run:
        text += f", run {decision.run}"
    if decision.detail:
        text += f": {decision.detail}"
    return text


def build_service(
    settings: ControllerSettings, api: ApiClient | None = None, clock: Clock = utc_now
) -> RetrainService:
    """The store, launcher and Event recorder the settings ask for. `api`: a kubernetes ApiClient
    (tests pass one aimed at a double of the API); without it, the pod's in-cluster credentials.
    Raises KubernetesUnavailable outside a pod."""
    if settings.launcher == "local":
        store: StateStore = FileStateStore(settings.state_file)
        return RetrainService(
            settings, store, LocalLauncher(settings.train_argv, settings.log_dir), NoEvents(), clock
        )
    from trainer.controller.kube import in_cluster_api, own_namespace

    client = api if api is not None else in_cluster_api()
    namespace = settings.namespace or own_namespace()
    assert settings.state_configmap and settings.trainer_cronjob  # the settings' own check
    configmap = ConfigMapStateStore(client, namespace, settings.state_configmap)
    launcher = KubernetesLauncher(client, namespace, settings.trainer_cronjob)
    return RetrainService(settings, configmap, launcher, KubernetesEvents(client, configmap), clock)
