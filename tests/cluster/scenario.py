"""Pieces of the cluster scenario that are more than one kubectl call: in-cluster load and probes,
the walkthrough's curl examples (k8s/README.md), and Prometheus queries through a port-forward."""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.cluster import kube

HERE = Path(__file__).parent
REQUEST_BODY = kube.REPO / "charts" / "mlops" / "files" / "predict-request.json"
# Every object the tests create themselves (load and probe Jobs, their ConfigMaps and pods).
TEST_LABELS = {"app.kubernetes.io/part-of": "cluster-tests"}
# The restricted PodSecurity profile, which the test namespace enforces on every pod.
RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def python_pod(name: str, image: str, script: str, args: list[str], files: dict[str, str],
               labels: dict[str, str] | None = None) -> list[dict]:  # fmt: skip
    """A ConfigMap with the files and a Job that runs `python /work/<script> ARGS` as non-root."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "labels": TEST_LABELS},
            "data": files,
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": TEST_LABELS},
            "spec": {
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 600,
                "template": {
                    "metadata": {"labels": labels or TEST_LABELS},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "securityContext": RESTRICTED_POD,
                        "containers": [
                            {
                                "name": "main",
                                "image": image,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["python", f"/work/{script}", *args],
                                "securityContext": RESTRICTED_CONTAINER,
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"cpu": "1", "memory": "256Mi"},
                                },
                                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                            }
                        ],
                        "volumes": [{"name": "work", "configMap": {"name": name}}],
                    },
                },
            },
        },
    ]


def submit(ns: kube.Namespace, objects: list[dict]) -> None:
    ns.apply({"apiVersion": "v1", "kind": "List", "items": objects})


def unique(prefix: str) -> str:
    return f"{prefix}-{int(time.time() * 1000) % 10**9}"


@dataclass
class InClusterLoad:
    """A loadgen.py Job against the predictor Service; `result()` waits and parses its summary."""

    ns: kube.Namespace
    name: str

    @classmethod
    def start(cls, ns: kube.Namespace, image: str, service_url: str, model: str, seconds: int,
              threads: int) -> InClusterLoad:  # fmt: skip
        name = unique("load")
        url = f"{service_url}/v1/models/{model}:predict"
        files = {"loadgen.py": (HERE / "loadgen.py").read_text(), "body.json": REQUEST_BODY.read_text()}
        submit(
            ns,
            python_pod(
                name, image, "loadgen.py", [url, str(seconds), str(threads), "/work/body.json"], files
            ),
        )
        return cls(ns, name)

    def result(self, timeout: float = 900) -> dict:
        logs = self.ns.wait_job(self.name, timeout)
        return json.loads(logs.strip().splitlines()[-1])


PROBE = """
import json, socket, sys
result = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        result[target] = "open"
    except OSError as exc:
        result[target] = type(exc).__name__
print(json.dumps(result))
"""


def reachable_from_outside(ns: kube.Namespace, image: str, targets: list[str]) -> dict[str, str]:
    """TCP connects from a pod that is not part of the release: target -> 'open' or the error."""
    name = unique("probe")
    submit(ns, python_pod(name, image, "probe.py", targets, {"probe.py": PROBE}))
    return json.loads(ns.wait_job(name, 300).strip().splitlines()[-1])


def reachable_from_pod(ns: kube.Namespace, pod: str, targets: list[str]) -> dict[str, str]:
    """The same connects from inside a running pod of the release (its egress policy applies)."""
    out = ns.kubectl("exec", pod, "--", "python", "-c", PROBE, *targets, timeout=120)
    return json.loads(out.strip().splitlines()[-1])


def readme_curl_examples(readme: Path, section: str) -> list[str]:
    """Every `curl` command in the ```bash blocks of one `## ` section of a markdown file (its `###`
    subsections included), as a user copies them."""
    text = readme.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
        for command in re.split(r"\n(?=\S)", block):
            if command.startswith("curl "):
                commands.append(command.strip())
    return commands


def run_curl(command: str, base_url: str) -> dict:
    """Run a documented curl command against the forwarded port; its JSON answer."""
    command = command.replace("http://127.0.0.1:8080", base_url)
    out = subprocess.run(
        ["bash", "-c", command + " --fail-with-body"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"{command}\nexit {out.returncode}: {out.stdout} {out.stderr}"
    return json.loads(out.stdout)


def promql(prometheus_url: str, query: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def dashboard_queries(dashboard: Path, variables: dict[str, str]) -> list[tuple[str, str]]:
    """(panel title, PromQL with the dashboard variables resolved) for every panel target."""
    panels = json.loads(dashboard.read_text())["panels"]
    queries = []
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in variables.items():
                expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
            queries.append((panel.get("title", "?"), expr))
    return queries
