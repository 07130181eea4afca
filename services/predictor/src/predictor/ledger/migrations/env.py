"""Alembic environment of the ledger: always run in process, on the connection `migrate()` hands over."""

from __future__ import annotations

from alembic import context

from predictor.ledger.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="ledger_schema_version",  # not `alembic_version`: the database may be shared (e.g. with MLflow)
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
