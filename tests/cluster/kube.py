"""kubectl and helm as a user types them, against whatever cluster KUBECONFIG names.

Every call goes through the real CLIs (no client library), so the tests exercise exactly the
commands k8s/README.md prints. Output of failed commands is part of the error.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scripts import local_stack as stack

REPO = stack.REPO
LOG_DIR = REPO / ".state" / "cluster"


class CommandFailed(RuntimeError):
    pass


def binary(name: str) -> str:
    """kubectl/helm/skaffold from PATH (kube-cluster env, Minikube), else `make tools`' copies."""
    found = shutil.which(name) or shutil.which(name, path=str(REPO / ".tools" / "bin"))
    if not found:
        raise CommandFailed(f'{name} not found on PATH: `eval "$(kube-cluster env)"` or `make tools`')
    return found


def run(argv: Sequence[str], *, timeout: float = 300, check: bool = True, input: str | None = None,
        env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run a command, capture its output, and raise with that output when it fails."""
    argv = [binary(argv[0]) if argv[0] in ("kubectl", "helm", "skaffold") else argv[0], *argv[1:]]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, input=input, cwd=cwd,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    if check and result.returncode != 0:
        raise CommandFailed(
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


@dataclass(frozen=True)
class Namespace:
    """kubectl -n NAME, plus the waits the scenario needs."""

    name: str

    def kubectl(self, *args: str, timeout: float = 300, check: bool = True, input: str | None = None) -> str:
        return run(["kubectl", "-n", self.name, *args], timeout=timeout, check=check, input=input).stdout

    def get(self, *what: str) -> dict:
        return json.loads(self.kubectl("get", *what, "-o", "json"))

    def items(self, *what: str) -> list[dict]:
        return self.get(*what)["items"]

    def apply(self, manifest: dict | str) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        self.kubectl("apply", "-f", "-", input=text)

    def job_outcome(self, name: str) -> str | None:
        """'Complete', 'Failed', or None while the Job runs."""
        conditions = self.get("job", name).get("status", {}).get("conditions", [])
        done = {c["type"] for c in conditions if c["status"] == "True"}
        return next((t for t in ("Complete", "Failed") if t in done), None)

    def wait_job(self, name: str, timeout: float = 600) -> str:
        """Wait until the Job finished; its logs (all containers) when it completed, else raise."""
        outcome = stack.wait_for(lambda: self.job_outcome(name), timeout, interval=2, what=f"job/{name} done")
        logs = self.kubectl("logs", f"job/{name}", "--all-containers", "--tail=-1", check=False)
        if outcome != "Complete":
            raise CommandFailed(f"job/{name} {outcome}\n{logs[-4000:]}\n{self.describe('job', name)}")
        return logs

    def describe(self, *what: str) -> str:
        return self.kubectl("describe", *what, check=False)

    def pods(self, component: str, instance: str) -> list[dict]:
        return self.items(
            "pods", "-l", f"app.kubernetes.io/instance={instance},app.kubernetes.io/component={component}"
        )

    def diagnostics(self) -> str:
        """What a user would look at when something hangs: objects, events, recent logs."""
        parts = [
            self.kubectl("get", "all,networkpolicies,pvc,hpa", "-o", "wide", check=False),
            self.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False)[-6000:],
        ]
        for pod in self.items("pods"):
            name = pod["metadata"]["name"]
            parts.append(
                f"--- logs {name}\n"
                + self.kubectl("logs", name, "--all-containers", "--tail=40", check=False)
            )
        return "\n".join(parts)


class PortForward:
    """`kubectl port-forward` in the background on a free local port, ready once it accepts."""

    def __init__(self, namespace: str, target: str, remote_port: int) -> None:
        self.local_port = stack.free_port()
        self.url = f"http://127.0.0.1:{self.local_port}"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self._log = (LOG_DIR / f"port-forward-{target.replace('/', '-')}.log").open("w")
        self._proc = subprocess.Popen(
            [binary("kubectl"), "-n", namespace, "port-forward", "--address", "127.0.0.1", target,
             f"{self.local_port}:{remote_port}"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            stack.wait_for(self._accepts, 60, interval=0.5, what=f"port-forward to {target}")
        except BaseException:
            self.close()
            raise

    def _accepts(self) -> bool:
        if self._proc.poll() is not None:
            raise CommandFailed(f"kubectl port-forward exited {self._proc.returncode}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.local_port)) == 0

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.close()


@contextmanager
def port_forward(namespace: str, target: str, remote_port: int) -> Iterator[PortForward]:
    forward = PortForward(namespace, target, remote_port)
    try:
        yield forward
    finally:
        forward.close()


# The one wait_for, polling kubectl every 2 s unless told otherwise.
wait_for = functools.partial(stack.wait_for, interval=2.0)


class ResourcePeaks:
    """Samples `kubectl top pods` in the background; the peak CPU and memory per component.

    The chart's requests and limits (charts/mlops/values.yaml) are set from these figures."""

    def __init__(self, namespace: str, interval: float = 5) -> None:
        self.namespace, self.interval = namespace, interval
        self.peaks: dict[str, tuple[int, int]] = {}  # component -> (millicores, MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                out = run(
                    ["kubectl", "-n", self.namespace, "top", "pods", "--no-headers"], check=False, timeout=30
                )
            except subprocess.TimeoutExpired:
                continue  # an overloaded API server; the next sample counts
            for line in out.stdout.splitlines():
                fields = line.split()
                if len(fields) < 3 or not (fields[1].endswith("m") and fields[2].endswith("Mi")):
                    continue  # metrics not there yet for a new pod
                component = self._component(fields[0])
                millicores, mib = int(fields[1][:-1]), int(fields[2][:-2])
                old = self.peaks.get(component, (0, 0))
                self.peaks[component] = (max(old[0], millicores), max(old[1], mib))

    @staticmethod
    def _component(pod: str) -> str:
        for component in ("ledger-database", "mlflow", "predictor", "prometheus", "pushgateway", "alertmanager", "trainer",
                          "drift", "retrain", "load", "probe", "test"):  # fmt: skip
            if component in pod:
                return component
        return pod

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(60)
        return "".join(
            f"{c:14} peak {cpu:5}m CPU {mib:6}Mi\n" for c, (cpu, mib) in sorted(self.peaks.items())
        )
