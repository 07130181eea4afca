"""The ledger's PostgreSQL image (k8s/postgres), built and run with podman the way the chart runs it.

    pytest tests/images -m images -k postgres        # builds only mlops-postgres

Read-only root filesystem, UID 10001, all capabilities dropped, a tmpfs at /tmp and at the socket
directory (the chart's emptyDirs), the data directory on a volume (the chart's PVC), and the
environment of the official postgres image (POSTGRES_USER, POSTGRES_PASSWORD[_FILE], POSTGRES_DB).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from scripts import local_stack as stack
from tests.images import podman as pm
from tests.images.conftest import SUMMARY, VERSION, BuiltImage, git_revision

pytestmark = [pytest.mark.images, pytest.mark.timeout(900)]

DATA_MOUNT = "/var/lib/postgresql/data"
PGDATA = f"{DATA_MOUNT}/pgdata"
# The chart's emptyDir at the socket directory, on top of what every container of the chart gets.
RUN_ARGS = (*pm.CHART_RUN_ARGS, "--tmpfs=/var/run/postgresql:rw")
# Debian's postgresql-15 with its dependencies (LLVM for JIT alone is ~130 MB): measured 462 MB.
ABOVE_BASE_BUDGET_MB = 480
GRACE_SECONDS = 10
USER, PASSWORD, DATABASE = "ledger", "s3cret 'pass' \"word\"", "ledger"


@dataclass
class Database:
    """A running mlops-postgres container on 127.0.0.1:port, and what USER logs in with."""

    server: pm.Server
    port: int
    password: str = PASSWORD
    dbname: str = DATABASE

    def connect(self, *, password: str | None = None) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=USER,
            password=self.password if password is None else password,
            dbname=self.dbname,
            connect_timeout=3,
        )


def volume(path: Path) -> Path:
    """An empty directory for the data volume, writable by UID 10001 (the chart's fsGroup does that)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def start_database(
    containers: pm.Containers,
    image: BuiltImage,
    data: Path,
    *,
    prefix: str,
    env: dict[str, str | None] | None = None,
    extra_args: tuple[str, ...] = (),
    password: str = PASSWORD,
    dbname: str = DATABASE,
) -> Database:
    """Start the image on `data` and wait until USER logs in over TCP with `password` to `dbname`.

    `env` is added to POSTGRES_USER/PASSWORD/DB (a None value removes one of them)."""
    port = stack.free_port()
    name = containers.new_name(prefix)
    env = {"POSTGRES_USER": USER, "POSTGRES_PASSWORD": PASSWORD, "POSTGRES_DB": DATABASE} | (env or {})
    pm.podman(
        "run", "--detach", f"--name={name}", *RUN_ARGS, f"--volume={data}:{DATA_MOUNT}", *extra_args,
        *(f"--env={k}={v}" for k, v in env.items() if v is not None),
        image.tag, "-c", f"port={port}",
    )  # fmt: skip
    database = Database(pm.Server(name=name, url=""), port, password, dbname)

    def ready() -> bool:
        assert database.server.running(), f"{image.tag} exited before it was ready:\n{database.server.logs()}"
        try:
            with database.connect():
                return True
        except psycopg.OperationalError:
            return False

    stack.wait_for(ready, timeout=90, what=f"{image.tag} accepting logins")
    return database


def stop_on_sigterm(database: Database) -> tuple[float, int]:
    """SIGTERM, as the kubelet sends it, and wait for the container to exit: (seconds, exit code)."""
    started = time.monotonic()
    pm.podman("kill", "--signal=TERM", database.server.name)
    stack.wait_for(
        lambda: not database.server.running(), timeout=GRACE_SECONDS, interval=0.1, what="exit on SIGTERM"
    )
    elapsed = time.monotonic() - started
    exit_code = int(pm.podman("inspect", "--format", "{{.State.ExitCode}}", database.server.name).stdout)
    return elapsed, exit_code


@pytest.fixture(scope="module")
def database(
    postgres_image: BuiltImage, containers: pm.Containers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    yield start_database(
        containers, postgres_image, volume(tmp_path_factory.mktemp("pgvolume") / "data"), prefix="postgres"
    )


# ----------------------------------------------------------------------------------- the image


def test_postgres_image_metadata(postgres_image: BuiltImage) -> None:
    config = pm.image_config(postgres_image.tag)
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "mlops-postgres"
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.revision"] == git_revision()
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.licenses"] and labels["org.opencontainers.image.description"]
    assert config["User"] == pm.CHART_USER
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PGDATA"] == PGDATA and env["HOME"] == "/tmp"
    # dumb-init turns SIGTERM into SIGINT (fast shutdown) for the postmaster alone; STOPSIGNAL agrees.
    assert config["Entrypoint"] == [
        "dumb-init", "--single-child", "--rewrite", "15:2", "--", "docker-entrypoint.sh",
    ]  # fmt: skip
    assert config["Cmd"] == ["postgres"]
    assert config["StopSignal"] in ("SIGINT", "2")


def test_postgres_image_size_and_contents(postgres_image: BuiltImage) -> None:
    above_mb = postgres_image.above_base / 1e6
    SUMMARY.append(
        f"mlops-postgres: {postgres_image.size / 1e6:.0f} MB on the stand-in base, {above_mb:.0f} MB above "
        f"it (budget {ABOVE_BASE_BUDGET_MB})"
    )
    assert above_mb <= ABOVE_BASE_BUDGET_MB, f"{above_mb:.0f} MB above the base"
    # Debian's PostgreSQL 15, no cluster made at install time, no apt lists left behind.
    script = (
        'postgres --version | grep -q "(PostgreSQL) 15\\." || exit 1; '
        'test -z "$(ls -A /etc/postgresql 2>/dev/null)" || exit 2; '
        'test -z "$(ls -A /var/lib/apt/lists)" || exit 3'
    )
    r = pm.podman("run", "--rm", "--entrypoint=sh", postgres_image.tag, "-c", script, check=False)
    assert r.returncode == 0, f"check {r.returncode} failed:\n{r.stdout}{r.stderr}"


# ----------------------------------------------------------------------------------- a database


def test_initialises_with_password_logins_over_tcp(database: Database) -> None:
    with database.connect() as connection:
        row = connection.execute(
            "select current_user, current_database(), current_setting('listen_addresses'),"
            " current_setting('password_encryption')"
        ).fetchone()
        assert row == (USER, DATABASE, "*", "scram-sha-256")
        rules = connection.execute(
            "select type, database, user_name, address, auth_method from pg_hba_file_rules"
        ).fetchall()
    # Every rule wants the password; one admits any address (the NetworkPolicy narrows it).
    assert {rule[-1] for rule in rules} == {"scram-sha-256"}, rules
    assert ("host", ["all"], ["all"], "all", "scram-sha-256") in rules
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        database.connect(password="wrong").close()


def test_runs_as_10001_on_a_read_only_root(database: Database) -> None:
    r = database.server.exec("sh", "-c", "grep -h '^Uid:' /proc/[0-9]*/status")
    assert {line.split()[1] for line in r.stdout.splitlines()} == {"10001"}, r.stdout + r.stderr
    r = database.server.exec(
        "sh", "-c", "touch /usr/x 2>/dev/null || touch /var/lib/x 2>/dev/null || echo read-only"
    )
    assert r.stdout.strip() == "read-only", r.stdout + r.stderr
    r = database.server.exec("stat", "-c", "%u %a", PGDATA)
    assert r.stdout.split() == ["10001", "700"], r.stdout + r.stderr


def test_the_predictors_ledger_migrations_run_on_it(database: Database) -> None:
    """The schema the predictor creates at start (Alembic, psycopg 3) on this PostgreSQL."""
    import sqlalchemy as sa

    from predictor.ledger.store import create_ledger_engine, migrate

    url = sa.URL.create(
        "postgresql",
        username=USER,
        password=PASSWORD,
        host="127.0.0.1",
        port=database.port,
        database=DATABASE,
    )
    engine = create_ledger_engine(url.render_as_string(hide_password=False))
    try:
        migrate(engine)
        migrate(engine)  # a second replica starting: a no-op
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"predictions", "labels", "ledger_schema_version"} <= tables


# ----------------------------------------------------------------------------------- its lifecycle


def test_sigterm_is_a_fast_clean_shutdown_and_a_restart_keeps_the_data(
    postgres_image: BuiltImage, containers: pm.Containers, tmp_path: Path
) -> None:
    data = volume(tmp_path / "data")
    first = start_database(containers, postgres_image, data, prefix="postgres-restart")
    with first.connect() as connection:
        connection.execute("create table kept (x int)")
        connection.execute("insert into kept values (42)")
    # A client holding a transaction open (the predictor's pool keeps connections): a smart
    # shutdown would wait for it until the SIGKILL.
    idle = first.connect()
    idle.execute("select 1")
    try:
        elapsed, exit_code = stop_on_sigterm(first)
    finally:
        idle.close()
    logs = first.server.logs(200)
    assert exit_code == 0, logs
    assert elapsed < GRACE_SECONDS / 2, f"took {elapsed:.1f}s to stop:\n{logs}"
    assert "fast shutdown request" in logs and "database system is shut down" in logs, logs

    # Same data, new credentials in the environment: the existing cluster is used as it is.
    second = start_database(
        containers, postgres_image, data, prefix="postgres-restart", env={"POSTGRES_PASSWORD": "ignored"}
    )
    with second.connect() as connection:
        assert connection.execute("select x from kept").fetchall() == [(42,)]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        second.connect(password="ignored").close()
    logs = second.server.logs(200)
    assert "initialising" not in logs, logs
    assert "database system was shut down at" in logs, logs  # no crash recovery


def test_password_file_and_a_database_name_that_needs_quoting(
    postgres_image: BuiltImage, containers: pm.Containers, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file")
    secret.chmod(0o644)
    database = start_database(
        containers, postgres_image, volume(tmp_path / "data"), prefix="postgres-file",
        env={"POSTGRES_PASSWORD": None, "POSTGRES_PASSWORD_FILE": "/run/secrets/password", "POSTGRES_DB": 'my "db"'},
        extra_args=(f"--volume={secret}:/run/secrets/password:ro",), password="from-a-file", dbname='my "db"',
    )  # fmt: skip
    with database.connect() as connection:
        assert connection.execute("select current_database()").fetchone() == ('my "db"',)


def test_refuses_an_empty_data_directory_without_a_password(
    postgres_image: BuiltImage, tmp_path: Path
) -> None:
    data = volume(tmp_path / "data")
    r = pm.podman(
        "run", "--rm", *RUN_ARGS, f"--volume={data}:{DATA_MOUNT}", postgres_image.tag, check=False, timeout=60
    )
    assert r.returncode == 1 and "POSTGRES_PASSWORD" in r.stderr, r.stdout + r.stderr
    assert not list(data.iterdir())


def test_refuses_a_data_directory_that_is_not_a_database(postgres_image: BuiltImage, tmp_path: Path) -> None:
    stray = volume(tmp_path / "data" / "pgdata") / "notes.txt"
    stray.write_text("not a database")
    r = pm.podman(
        "run", "--rm", *RUN_ARGS, f"--volume={tmp_path / 'data'}:{DATA_MOUNT}",
        f"--env=POSTGRES_PASSWORD={PASSWORD}", postgres_image.tag, check=False, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1 and "neither empty nor a database" in r.stderr, r.stdout + r.stderr
    assert stray.read_text() == "not a database"


def test_a_half_made_initialisation_is_started_over(
    postgres_image: BuiltImage, containers: pm.Containers, tmp_path: Path
) -> None:
    """initdb runs in a staging directory renamed into place: one left by a crash is discarded."""
    data = volume(tmp_path / "data")
    leftover = volume(data / "pgdata.initdb")
    (leftover / "PG_VERSION").write_text("15\n")
    database = start_database(containers, postgres_image, data, prefix="postgres-staging")
    with database.connect() as connection:
        assert connection.execute("select 1").fetchone() == (1,)
    assert sorted(p.name for p in data.iterdir()) == ["pgdata"]
