"""The local stack's own parts that other tests lean on: the PostgreSQL harness (scripts/local_stack.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from scripts import local_stack as stack


def psycopg_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def test_postgres_server_keeps_its_data_across_a_stop_and_a_start(
    postgres_server: stack.PostgresServer,
) -> None:
    url = make_url(postgres_server.url)
    assert (url.drivername, url.host, url.port, url.database) == (
        "postgresql",
        "127.0.0.1",
        postgres_server.port,
        "ledger",
    )
    engine = sa.create_engine(psycopg_url(postgres_server.url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE harness_check (id integer PRIMARY KEY, note text)"))
            conn.execute(sa.text("INSERT INTO harness_check VALUES (1, 'before the stop')"))

        postgres_server.stop()
        assert not postgres_server.alive()
        with pytest.raises(sa.exc.OperationalError), engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

        postgres_server.start()
        engine.dispose()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT note FROM harness_check")).scalars().all() == [
                "before the stop"
            ]
    finally:
        postgres_server.start()
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS harness_check"))
        engine.dispose()


def test_postgres_server_wants_its_password(postgres_server: stack.PostgresServer) -> None:
    """TCP clients authenticate as the services will (the URL carries the password)."""
    wrong = make_url(psycopg_url(postgres_server.url)).set(password="not-the-password")
    engine = sa.create_engine(wrong)
    with pytest.raises(sa.exc.OperationalError, match="password authentication failed"), engine.connect():
        pass
    engine.dispose()


def test_postgres_server_creates_a_database_per_caller(postgres_server: stack.PostgresServer) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second and make_url(first).host == "127.0.0.1"
    engines = [sa.create_engine(psycopg_url(url)) for url in (first, second)]
    with engines[0].begin() as conn:
        conn.execute(sa.text("CREATE TABLE only_here (id integer)"))
    with engines[1].connect() as conn:
        assert not sa.inspect(conn).has_table("only_here")
    for engine in engines:
        engine.dispose()
