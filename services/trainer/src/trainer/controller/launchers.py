"""Where a training run runs: a local process (`make demo`, tests) or a Kubernetes Job.

Both learn a run's outcome from something that outlives the controller, so a restarted controller
picks up where the old one left off: the local run's wrapper writes `<name>.exit`, the Job has its
conditions. `status` answers running, succeeded, failed, or unknown (the run left no trace: a Job
deleted, a process killed before it could write its exit code).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from trainer.controller.kube import API_TIMEOUT_SECONDS, api_error

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

RunState = Literal["running", "succeeded", "failed", "unknown"]
CREATED_BY_LABEL = "app.kubernetes.io/created-by"
CREATED_BY = "retrain-controller"
TRIGGER_ANNOTATION = "mlops.example/trigger"
MAX_NAME = 63  # a Job's name becomes the value of its pods' job-name label

# `sh -c WRAPPER <base> <command...>`: $0 is the path without extension (and puts the run's name in the
# process's command line), "$@" the command. The exit code is written to a temporary file and renamed,
# so a reader never sees half of it.
WRAPPER = (
    'echo $$ > "$0.pid"; "$@"; code=$?; '
    'echo "$code" > "$0.exit.tmp" && mv "$0.exit.tmp" "$0.exit"; exit "$code"'
)


class LaunchError(Exception):
    """The run could not be started (nothing runs)."""


class StatusUnavailable(Exception):
    """The run's status cannot be read right now (the API did not answer); try again later."""


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    detail: str = ""


@dataclass(frozen=True)
class AlertRef:
    alertname: str
    fingerprint: str


class Launcher(Protocol):
    def run_name(self, now: datetime) -> str: ...

    def launch(self, run: str, trigger: AlertRef) -> None: ...

    def status(self, run: str) -> RunStatus: ...

    def describe(self) -> str: ...


class LocalLauncher:
    """`<command>` as a child process in its own session (it outlives the controller), with the
    controller's environment; output to `<log_dir>/<name>.log`, exit code to `<name>.exit`."""

    def __init__(self, argv: Sequence[str], log_dir: Path) -> None:
        self.argv = list(argv)
        self.log_dir = log_dir
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def describe(self) -> str:
        return f"local process `{' '.join(self.argv)}`, logs in {self.log_dir}"

    def run_name(self, now: datetime) -> str:
        return f"retrain-{now:%Y%m%d%H%M%S}"

    def log_file(self, run: str) -> Path:
        return self.log_dir / f"{run}.log"

    def launch(self, run: str, trigger: AlertRef) -> None:
        base = self.log_dir / run
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with self.log_file(run).open("ab") as output:
                self._children[run] = subprocess.Popen(
                    ["sh", "-c", WRAPPER, str(base), *self.argv],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a SIGTERM to the controller leaves the run alone
                )
        except OSError as exc:
            raise LaunchError(f"cannot start `{' '.join(self.argv)}`: {exc}") from exc

    def status(self, run: str) -> RunStatus:
        base = self.log_dir / run
        child = self._children.get(run)
        if child is not None and child.poll() is not None:
            del self._children[run]  # reaped; its exit file is written by now
        exit_file = base.with_name(f"{run}.exit")
        if exit_file.exists():
            try:
                code = int(exit_file.read_text().strip())
            except (OSError, ValueError) as exc:
                return RunStatus("failed", f"unreadable exit code in {exit_file}: {exc}")
            detail = f"exit code {code}, log {self.log_file(run)}"
            return RunStatus("succeeded" if code == 0 else "failed", detail)
        if run in self._children or _alive(base.with_name(f"{run}.pid"), run):
            return RunStatus("running")
        return RunStatus("unknown", f"no process and no exit code for {run} in {self.log_dir}")


def _alive(pid_file: Path, run: str) -> bool:
    """The wrapper of `run` (started by this or an earlier controller) is still running."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no procfs (macOS): the signal check is all there is
    try:
        zombie = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        ours = run.encode() in (proc / "cmdline").read_bytes()  # not a recycled pid
    except (OSError, IndexError):
        return False
    return ours and not zombie


class KubernetesLauncher:
    """A Job copied from the trainer CronJob's jobTemplate: the same image, env, service account and
    security context as the scheduled runs; labelled as ours and annotated with the alert."""

    def __init__(self, api: ApiClient, namespace: str, cronjob: str) -> None:
        from kubernetes import client

        self.batch = client.BatchV1Api(api)
        self.namespace = namespace
        self.cronjob = cronjob

    def describe(self) -> str:
        return f"Jobs from CronJob {self.namespace}/{self.cronjob}"

    def run_name(self, now: datetime) -> str:
        suffix = f"-retrain-{now:%Y%m%d%H%M%S}"
        return self.cronjob[: MAX_NAME - len(suffix)].rstrip("-.") + suffix

    def launch(self, run: str, trigger: AlertRef) -> None:
        from kubernetes import client

        try:
            cronjob = self.batch.read_namespaced_cron_job(
                self.cronjob, self.namespace, _request_timeout=API_TIMEOUT_SECONDS
            )
            template = cronjob.spec.job_template
            meta = template.metadata or client.V1ObjectMeta()
            job = client.V1Job(
                api_version="batch/v1",
                kind="Job",
                metadata=client.V1ObjectMeta(
                    name=run,
                    namespace=self.namespace,
                    labels={**(meta.labels or {}), CREATED_BY_LABEL: CREATED_BY},
                    annotations={
                        **(meta.annotations or {}),
                        TRIGGER_ANNOTATION: f"{trigger.alertname}/{trigger.fingerprint}",
                    },
                    # Owned by the CronJob, as `kubectl create job --from=cronjob/…` does: deleting the
                    # CronJob (helm uninstall) takes its retrain Jobs and their pods with it.
                    owner_references=[
                        client.V1OwnerReference(
                            api_version="batch/v1",
                            kind="CronJob",
                            name=cronjob.metadata.name,
                            uid=cronjob.metadata.uid,
                            controller=True,
                        )
                    ]
                    if cronjob.metadata and cronjob.metadata.uid
                    else None,
                ),
                spec=template.spec,
            )
            self.batch.create_namespaced_job(self.namespace, job, _request_timeout=API_TIMEOUT_SECONDS)
        except (
            Exception
        ) as exc:  # ApiException (403: RBAC, 404: no CronJob, 409: name taken) or no connection
            raise LaunchError(f"cannot create Job {self.namespace}/{run}: {api_error(exc)}") from exc

    def status(self, run: str) -> RunStatus:
        try:
            job = self.batch.read_namespaced_job(run, self.namespace, _request_timeout=API_TIMEOUT_SECONDS)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return RunStatus("unknown", f"Job {self.namespace}/{run} no longer exists")
            raise StatusUnavailable(f"cannot read Job {self.namespace}/{run}: {api_error(exc)}") from exc
        for condition in (job.status.conditions if job.status else None) or []:
            if condition.status != "True":
                continue
            detail = f"Job {run}: {condition.reason or condition.type}" + (
                f": {condition.message}" if condition.message else ""
            )
            if condition.type == "Complete":
                return RunStatus("succeeded", detail)
            if condition.type == "Failed":
                return RunStatus("failed", detail)
        return RunStatus("running")
