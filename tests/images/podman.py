"""Thin helpers around the `podman` CLI for the image tests: build, run, wait, stop, clean up.

Every container runs on the host network (the test machine has no bridge networking) and the way
the chart runs it: read-only root filesystem, a tmpfs at /tmp as the only writable path (the
chart's emptyDir), UID/GID 10001, all capabilities dropped, no privilege escalation.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import pytest

ENGINE_SETUP_HINT = "run ../shared/tools/container-engine all"
BASE_IMAGE = "python:3.11-slim"
CHART_USER = "10001:10001"
# What charts/mlops gives every container: containerSecurityContext, podSecurityContext and the
# emptyDir at /tmp (sizeLimit = tmpSizeLimit). --read-only-tmpfs=false: podman would otherwise
# add writable /run and /var/tmp, which the chart does not have.
CHART_RUN_ARGS = (
    "--network=host",
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs=/tmp:rw,size=1g",
    f"--user={CHART_USER}",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
)


def podman_binary() -> str:
    path = shutil.which("podman")
    if path is None:
        pytest.fail(f"podman is not installed: {ENGINE_SETUP_HINT}", pytrace=False)
    return path


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [podman_binary(), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def image_size(image: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def image_config(image: str) -> dict:
    return json.loads(podman("image", "inspect", image).stdout)[0]["Config"]


def unique_name(prefix: str) -> str:
    return f"mlops-imgtest-{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Containers:
    """Names of the containers a test session started; all are removed at the end, whatever happened."""

    names: list[str] = field(default_factory=list)

    def new_name(self, prefix: str) -> str:
        name = unique_name(prefix)
        self.names.append(name)
        return name

    def remove_all(self) -> None:
        for name in self.names:
            podman("rm", "--force", "--time=0", name, check=False)
        self.names.clear()


def run_once(
    containers: Containers,
    image: str,
    args: Sequence[str],
    *,
    prefix: str,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run a one-shot container (a Job) to completion and return its exit status and output."""
    name = containers.new_name(prefix)
    env_args = [f"--env={k}={v}" for k, v in (env or {}).items()]
    try:
        return podman(
            "run", f"--name={name}", *CHART_RUN_ARGS, *env_args, image, *args, timeout=timeout, check=False
        )
    finally:
        podman("rm", "--force", "--time=0", name, check=False)


@dataclass
class Server:
    name: str
    url: str

    def logs(self, lines: int = 60) -> str:
        r = podman("logs", "--tail", str(lines), self.name, check=False)
        return (r.stdout + r.stderr)[-6000:]

    def running(self) -> bool:
        r = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return r.stdout.strip() == "true"

    def exec(self, *argv: str) -> subprocess.CompletedProcess:
        return podman("exec", self.name, *argv, check=False)

    def stop(self, grace_seconds: int = 10) -> tuple[float, int]:
        """`podman stop -t grace`: SIGTERM, then SIGKILL after the grace period (like the kubelet).

        Returns (seconds it took, the container's exit code).
        """
        started = time.monotonic()
        podman("stop", f"--time={grace_seconds}", self.name, timeout=grace_seconds + 30)
        elapsed = time.monotonic() - started
        exit_code = int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())
        return elapsed, exit_code


def start_server(
    containers: Containers,
    image: str,
    args: Sequence[str],
    *,
    prefix: str,
    port: int,
    ready_path: str,
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> Server:
    """Start a long-running container in the background and wait until `ready_path` answers 200."""
    name = containers.new_name(prefix)
    env_args = [f"--env={k}={v}" for k, v in (env or {}).items()]
    podman("run", "--detach", f"--name={name}", *CHART_RUN_ARGS, *env_args, image, *args)
    server = Server(name=name, url=f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not server.running():
            raise AssertionError(f"{image} exited before it was ready:\n{server.logs()}")
        try:
            r = httpx.get(server.url + ready_path, timeout=3)
            if r.status_code == 200:
                return server
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"{image} not ready at {ready_path} after {timeout:.0f}s ({last}):\n{server.logs()}")
