"""which alias answered each prediction, and the shadow model's prediction of the same row

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows written before this revision, and rows scored without a shadow, have none.
    with op.batch_alter_table("predictions") as batch:  # batch: SQLite cannot ALTER much in place
        batch.add_column(sa.Column("model_alias", sa.String(255), nullable=True))
        batch.add_column(sa.Column("shadow_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("shadow_prediction", sa.Double, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("shadow_prediction")
        batch.drop_column("shadow_version")
        batch.drop_column("model_alias")
