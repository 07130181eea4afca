"""Real processes on 127.0.0.1, wired the way the chart wires them in a cluster.

Used by the integration and e2e tests and by `make demo` (scripts/demo.py), so the local loop is
orchestrated in exactly one place. Every process logs to a file in the state folder; when one dies
before it is ready, the error carries the tail of its log.
"""

from __future__ import annotations

import glob
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CHART = REPO / "charts" / "mlops"
ALERT_RULES = CHART / "rules" / "alerts.yaml"
ALERTMANAGER_CONFIG = CHART / "files" / "alertmanager.yml"
# What files/alertmanager.yml names as the chart would render it for release "mlops"; the local stack
# replaces both with its own controller's address and a token file in its state folder.
ALERTMANAGER_HOOK_URL = "http://mlops-retrain-controller:8080/v1/alerts"
ALERTMANAGER_TOKEN_FILE = "/etc/alertmanager/secrets/token"
# Debian installs these names; the tests and the demo run the real binaries.
PROMETHEUS_BINARIES = {
    "prometheus": "prometheus",
    "alertmanager": "prometheus-alertmanager",
    "pushgateway": "prometheus-pushgateway",
    "promtool": "promtool",
}


class StackError(RuntimeError):
    """A process of the local stack could not be started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_binary(name: str) -> str:
    """Path of a system binary, or a clear error naming the package that provides it."""
    path = shutil.which(name)
    if path is None:
        raise StackError(
            f"{name} is not installed: run `make system-deps` "
            "(Debian packages prometheus, prometheus-alertmanager, prometheus-pushgateway)"
        )
    return path


@dataclass
class Process:
    name: str
    url: str
    popen: subprocess.Popen
    log_path: Path
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15) -> int:
        """`stop_signal` (SIGTERM), wait, then SIGKILL: the same sequence the kubelet uses."""
        if self.popen.poll() is None:
            self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def wait_until_ready(proc: Process, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise StackError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            r = httpx.get(proc.url + path, timeout=2)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise StackError(
        f"{proc.name} not ready at {proc.url}{path} after {timeout:.0f}s ({last}):\n{proc.log_tail()}"
    )


def start_process(
    name: str,
    argv: list[str],
    *,
    port: int,
    state_dir: Path,
    ready_path: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Process:
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / f"{name}.log"
    log = log_path.open("ab")
    popen = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=state_dir,
        start_new_session=True,  # Ctrl-C in the demo reaches us, and we stop children in order
    )
    log.close()
    proc = Process(name=name, url=f"http://127.0.0.1:{port}", popen=popen, log_path=log_path)
    try:
        wait_until_ready(proc, ready_path, timeout)
    except BaseException:
        proc.stop()
        raise
    return proc


def start_mlflow(state_dir: Path, port: int | None = None) -> Process:
    """`mlflow server` with a SQLite store; clients upload artifacts through the server."""
    port = port or free_port()
    home = state_dir / "mlflow"
    home.mkdir(parents=True, exist_ok=True)
    argv = [
        str(VENV_BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(home / "artifacts"),
        "--workers",
        "1",
    ]
    return start_process("mlflow", argv, port=port, state_dir=state_dir, ready_path="/health", timeout=120)


def start_predictor(
    state_dir: Path,
    mlflow_uri: str,
    *,
    name: str = "predictor",
    port: int | None = None,
    settings: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> Process:
    """One predictor process (one uvicorn worker), ready once it has loaded the champion."""
    port = port or free_port()
    env = {"MLFLOW_TRACKING_URI": mlflow_uri, "LOG_FORMAT": "json", **(settings or {})}
    argv = [str(VENV_BIN / "predictor"), "--host", "127.0.0.1", "--port", str(port)]
    return start_process(
        name, argv, port=port, state_dir=state_dir, ready_path="/readyz", env=env, timeout=timeout
    )


def start_pushgateway(state_dir: Path, port: int | None = None) -> Process:
    port = port or free_port()
    # In memory only: Debian's build persists to one shared file by default, so each test's gateway
    # would start with every earlier one's groups.
    argv = [
        require_binary(PROMETHEUS_BINARIES["pushgateway"]),
        f"--web.listen-address=127.0.0.1:{port}",
        "--persistence.file=",
    ]
    return start_process("pushgateway", argv, port=port, state_dir=state_dir, ready_path="/-/ready")


def start_alertmanager(
    state_dir: Path,
    port: int | None = None,
    config: Path = ALERTMANAGER_CONFIG,
    *,
    controller_url: str | None = None,
    token: str | None = None,
) -> Process:
    """Alertmanager with the chart's own config file, its retraining webhook pointed at `controller_url`
    (with `token` as the bearer credential); without a controller the hook stays unreachable, as in a
    release that disabled retraining."""
    port = port or free_port()
    data = state_dir / "alertmanager"
    data.mkdir(parents=True, exist_ok=True)
    token_file = data / "token"
    token_file.write_text(token or secrets.token_urlsafe(24))
    token_file.chmod(0o600)
    rendered = config.read_text().replace(ALERTMANAGER_TOKEN_FILE, str(token_file))
    if controller_url:
        rendered = rendered.replace(ALERTMANAGER_HOOK_URL, f"{controller_url}/v1/alerts")
    (data / "alertmanager.yml").write_text(rendered)
    argv = [
        require_binary(PROMETHEUS_BINARIES["alertmanager"]),
        f"--config.file={data / 'alertmanager.yml'}",
        f"--storage.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip: one instance
    ]
    return start_process("alertmanager", argv, port=port, state_dir=state_dir, ready_path="/-/ready")


def start_controller(
    state_dir: Path,
    mlflow_uri: str,
    *,
    token: str,
    port: int | None = None,
    settings: Mapping[str, str] | None = None,
) -> Process:
    """`trainer controller` with the local launcher: each retraining run is a `trainer train` process,
    and the guard rails live in a state file in the state folder (the chart keeps them in a ConfigMap)."""
    port = port or free_port()
    home = state_dir / "retrain-controller"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "LOG_FORMAT": "json",
        "RETRAINING_HOST": "127.0.0.1",
        "RETRAINING_PORT": str(port),
        "RETRAINING_WEBHOOK_TOKEN": token,
        "RETRAINING_LAUNCHER": "local",
        "RETRAINING_STATE_FILE": str(home / "state.json"),
        "RETRAINING_RUN_LOG_DIR": str(home / "runs"),
        "RETRAINING_TRAIN_COMMAND": f"{VENV_BIN / 'trainer'} train",
        "RETRAINING_STATUS_INTERVAL_SECONDS": "1",
        **(settings or {}),
    }
    argv = [str(VENV_BIN / "trainer"), "controller"]
    return start_process(
        "retrain-controller", argv, port=port, state_dir=state_dir, ready_path="/readyz", env=env
    )


# Debian's `postgresql` keeps its server binaries off PATH, one folder per major version.
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def postgres_bin_dir() -> Path:
    """The folder holding initdb/postgres/pg_isready: Debian's newest version, else the one on PATH."""
    debian = sorted(glob.glob(POSTGRES_BIN_GLOB), key=lambda d: int(Path(d).parent.name or 0))
    for folder in reversed(debian):
        if (Path(folder) / "postgres").exists():
            return Path(folder)
    on_path = shutil.which("initdb") and shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    raise StackError("postgres is not installed: run `make system-deps` (Debian package postgresql)")


@dataclass
class PostgresServer(Process):
    """A throwaway PostgreSQL cluster on 127.0.0.1 that can be stopped and started again on the same data.

    `url` is a SQLAlchemy URL with the password (`postgresql://mlops:<pw>@127.0.0.1:<port>/ledger`): the
    services normalise the scheme to psycopg 3 themselves. The data lives in a temp folder outside the
    test's state folder, because PostgreSQL refuses to run as root: as root, the server runs as the
    `postgres` system user, who cannot enter pytest's private (0700) temp folders.
    """

    # Fast shutdown (open sessions are disconnected, data is checkpointed). SIGTERM would be a 'smart'
    # shutdown that waits for every client, e.g. an idle connection pool.
    stop_signal: ClassVar[signal.Signals] = signal.SIGINT
    bin_dir: Path = Path()
    home: Path = Path()
    """Data (home/data) and the server's unix socket; removed by `remove()`."""
    port: int = 0
    user: str = "mlops"
    password: str = ""
    database: str = "ledger"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def start(self, timeout: float = 60) -> None:
        """Start the server again on its data (after `stop()`); a running server is left alone."""
        if not self.alive():
            self.popen = _spawn_postgres(self.bin_dir, self.home, self.port, self.log_path)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        try:
            wait_for(self._ready, timeout, what=f"{self.name} accepting connections on 127.0.0.1:{self.port}")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if not self.alive():
            raise StackError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
        probe = [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(probe, stdin=subprocess.DEVNULL, check=False).returncode == 0

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database on this server (a test's own, so tests never share tables); its URL."""
        name = name or f"db_{secrets.token_hex(6)}"
        createdb = [
            str(self.bin_dir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            name,
        ]
        created = subprocess.run(
            createdb,
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0:
            raise StackError(f"createdb {name} failed: {created.stderr.strip()}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def remove(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def _spawn_postgres(bin_dir: Path, home: Path, port: int, log_path: Path) -> subprocess.Popen:
    argv = [
        str(bin_dir / "postgres"),
        "-D", str(home / "data"),
        "-p", str(port),
        "-k", str(home),  # unix socket here, not in /var/run/postgresql
        "-c", "listen_addresses=127.0.0.1",
        # A test database: durability against an OS crash is not needed, speed on 2 cores is.
        "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=home,
            start_new_session=True,
            **_postgres_user(),
        )


def _postgres_user() -> dict:
    """Popen arguments to run a server binary as the `postgres` system user when we are root
    (initdb and postgres refuse root); none otherwise."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def start_postgres(
    state_dir: Path, port: int | None = None, *, database: str = "ledger", user: str = "mlops"
) -> PostgresServer:
    """A new PostgreSQL cluster (initdb) with one database and one password-protected superuser, ready.

    Its log is `state_dir/postgres.log`. `stop()` then `start()` gives "database down, then back" on the
    same port and data; `remove()` stops it and deletes the data.
    """
    bin_dir = postgres_bin_dir()
    port = port or free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "postgres.log"
    home = Path(tempfile.mkdtemp(prefix="mlops-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
    password = secrets.token_hex(16)
    pwfile = home / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    initdb = [
        str(bin_dir / "initdb"),
        "-D", str(home / "data"),
        "-U", user,
        f"--pwfile={pwfile}",
        "--auth-local=trust",  # the unix socket lives in `home`, reachable by its owner only
        "--auth-host=scram-sha-256",  # TCP clients give the password, as the services do
        "--encoding=UTF8", "--locale=C", "--no-sync",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        result = subprocess.run(
            initdb, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=home,
            check=False, **_postgres_user(),
        )  # fmt: skip
    pwfile.unlink()
    if result.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        raise StackError(
            f"initdb exited with {result.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}"
        )
    server = PostgresServer(
        name="postgres",
        url=f"postgresql://{user}:{password}@127.0.0.1:{port}/{database}",
        popen=_spawn_postgres(bin_dir, home, port, log_path),
        log_path=log_path,
        bin_dir=bin_dir,
        home=home,
        port=port,
        user=user,
        password=password,
        database=database,
    )
    try:
        server.wait_ready()
        server.create_database(database)
    except BaseException:
        server.remove()
        raise
    return server


def prometheus_config(
    *,
    predictors: list[str],
    pushgateway: str,
    alertmanager: str | None,
    rule_files: list[Path],
    interval: str,
    controller: str | None = None,
) -> str:
    """The local equivalent of the chart's Prometheus config: static targets instead of pod discovery."""

    def hostport(url: str) -> str:
        return url.removeprefix("http://").removeprefix("https://")

    targets = ", ".join(f'"{hostport(u)}"' for u in predictors)
    rules = "\n".join(f"  - {p}" for p in rule_files)
    controller_job = (
        f'  - job_name: retrain-controller\n    static_configs:\n      - targets: ["{hostport(controller)}"]\n'
        if controller
        else ""
    )
    alerting = (
        f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{hostport(alertmanager)}']\n"
        if alertmanager
        else ""
    )
    return (
        textwrap.dedent(f"""\
        global:
          scrape_interval: {interval}
          evaluation_interval: {interval}
        rule_files:
        {rules}
        scrape_configs:
          - job_name: predictor
            static_configs:
              - targets: [{targets}]
          - job_name: pushgateway
            honor_labels: true
            static_configs:
              - targets: ["{hostport(pushgateway)}"]
        """)
        + controller_job
        + alerting
    )


def start_prometheus(
    state_dir: Path,
    *,
    predictors: list[str],
    pushgateway: str,
    alertmanager: str | None,
    rule_files: list[Path] | None = None,
    interval: str = "2s",
    port: int | None = None,
    controller: str | None = None,
) -> Process:
    """Prometheus loading the chart's alert rules file itself (one source of truth)."""
    port = port or free_port()
    home = state_dir / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    config.write_text(
        prometheus_config(
            predictors=predictors,
            pushgateway=pushgateway,
            alertmanager=alertmanager,
            rule_files=rule_files if rule_files is not None else [ALERT_RULES],
            interval=interval,
            controller=controller,
        )
    )
    argv = [
        require_binary(PROMETHEUS_BINARIES["prometheus"]),
        f"--config.file={config}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return start_process("prometheus", argv, port=port, state_dir=state_dir, ready_path="/-/ready")


@dataclass
class LocalStack:
    """Processes started in order and stopped in reverse, whatever happens in between."""

    state_dir: Path
    processes: dict[str, Process] = field(default_factory=dict)

    def add(self, proc: Process) -> Process:
        self.processes[proc.name] = proc
        return proc

    def __getitem__(self, name: str) -> Process:
        return self.processes[name]

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop()
        self.processes.clear()


@contextmanager
def local_stack(state_dir: Path) -> Iterator[LocalStack]:
    stack = LocalStack(state_dir)
    try:
        yield stack
    finally:
        stack.stop()


def run_cli(
    argv: list[str], env: Mapping[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """Run one of our console scripts (trainer, drift-monitor) from the venv and capture its output."""
    exe = str(VENV_BIN / argv[0])
    return subprocess.run(
        [exe, *argv[1:]],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# ---------------------------------------------------------------- the whole loop (demo and e2e)


@dataclass
class Loop:
    """MLflow, predictor replicas and the monitoring trio, as the chart runs them in a cluster.

    Without the Prometheus packages (`monitoring=False`) the trio is absent: drift is still
    computed and reported, but nothing is pushed or alerted.
    """

    stack: LocalStack
    mlflow: Process
    predictors: list[Process]
    pushgateway: Process | None = None
    alertmanager: Process | None = None
    prometheus: Process | None = None
    controller: Process | None = None
    controller_token: str | None = None

    @property
    def predictor_urls(self) -> list[str]:
        return [p.url for p in self.predictors]


def monitoring_available() -> bool:
    return all(shutil.which(b) for b in ("prometheus", "prometheus-alertmanager", "prometheus-pushgateway"))


def start_loop(
    stack: LocalStack,
    mlflow: Process,
    *,
    replicas: int = 2,
    monitoring: bool = True,
    predictor_settings: Mapping[str, str] | None = None,
    ports: Mapping[str, int] | None = None,
    controller_settings: Mapping[str, str] | None = None,
) -> Loop:
    """Start the predictors (and the monitoring processes) next to a running MLflow with a champion.

    With `controller_settings` (and monitoring) the retrain controller runs too, and Alertmanager's
    retraining webhook reaches it: the closed loop."""
    ports = ports or {}
    loop = Loop(stack, mlflow, predictors=[])
    for i in range(replicas):
        name = f"predictor-{i}"
        loop.predictors.append(
            stack.add(
                start_predictor(
                    stack.state_dir, mlflow.url, name=name, port=ports.get(name), settings=predictor_settings
                )
            )
        )
    if monitoring:
        if controller_settings is not None:
            loop.controller_token = secrets.token_urlsafe(24)
            loop.controller = stack.add(
                start_controller(
                    stack.state_dir,
                    mlflow.url,
                    token=loop.controller_token,
                    port=ports.get("retrain-controller"),
                    settings=controller_settings,
                )
            )
        loop.pushgateway = stack.add(start_pushgateway(stack.state_dir, port=ports.get("pushgateway")))
        loop.alertmanager = stack.add(
            start_alertmanager(
                stack.state_dir,
                port=ports.get("alertmanager"),
                controller_url=loop.controller.url if loop.controller else None,
                token=loop.controller_token,
            )
        )
        loop.prometheus = stack.add(
            start_prometheus(
                stack.state_dir,
                predictors=loop.predictor_urls,
                pushgateway=loop.pushgateway.url,
                alertmanager=loop.alertmanager.url,
                port=ports.get("prometheus"),
                controller=loop.controller.url if loop.controller else None,
            )
        )
    return loop


def run_drift_monitor(
    loop: Loop, *, window_seconds: float, timeout: float = 300, env: Mapping[str, str] | None = None
) -> tuple[int, dict | None, str]:
    """One `drift-monitor` run against the loop's predictors: (exit code, JSON report, log).

    `env` adds settings, e.g. DRIFT_MONITOR_LEDGER_DATABASE_URL for the quality check."""
    env = {
        "MLFLOW_TRACKING_URI": loop.mlflow.url,
        "DRIFT_MONITOR_WINDOW_SECONDS": str(max(1, math.ceil(window_seconds))),
        "LOG_FORMAT": "json",
        **(env or {}),
    }
    argv = ["drift-monitor", "--targets", *loop.predictor_urls]
    if loop.pushgateway:
        argv += ["--pushgateway", loop.pushgateway.url]
    result = run_cli(argv, env=env, timeout=timeout)
    report = json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else None
    return result.returncode, report, result.stderr


def prometheus_alerts(prometheus_url: str, name: str) -> list[dict]:
    """Active (pending or firing) alerts of that name, from Prometheus' HTTP API."""
    alerts = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("alertname") == name]


def alertmanager_alerts(alertmanager_url: str, name: str) -> list[dict]:
    """Alerts of that name that reached Alertmanager (its v2 API)."""
    alerts = httpx.get(
        f"{alertmanager_url}/api/v2/alerts", params={"filter": f'alertname="{name}"'}, timeout=5
    ).json()
    return list(alerts)


def wait_for(condition, timeout: float = 30, interval: float = 0.25, what: str = "condition"):
    """Poll until `condition()` returns something truthy; return it, or raise TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout:.0f}s")
        time.sleep(interval)


def wait_for_alert(loop: Loop, name: str, timeout: float = 180) -> tuple[dict, dict]:
    """Until the alert fires in Prometheus and reaches Alertmanager: (Prometheus alert, Alertmanager alert)."""
    assert loop.prometheus and loop.alertmanager, "the loop runs without monitoring"
    fired = wait_for(
        lambda: [a for a in prometheus_alerts(loop.prometheus.url, name) if a["state"] == "firing"],
        timeout,
        interval=1,
        what=f"{name} firing in Prometheus",
    )
    routed = wait_for(
        lambda: alertmanager_alerts(loop.alertmanager.url, name),
        60,
        interval=1,
        what=f"{name} in Alertmanager",
    )
    return fired[0], routed[0]
