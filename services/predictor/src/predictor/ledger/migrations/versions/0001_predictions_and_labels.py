"""predictions and labels

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("features", sa.JSON, nullable=False),
        sa.Column("prediction", sa.Double, nullable=False),
    )
    op.create_index(
        "ix_predictions_model_time", "predictions", ["model_name", "model_version", "predicted_at"]
    )
    op.create_index("ix_predictions_predicted_at", "predictions", ["predicted_at"])
    op.create_table(
        "labels",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("actual", sa.Double, nullable=False),
        sa.Column("label_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_labels_received_at", "labels", ["received_at"])


def downgrade() -> None:
    op.drop_table("labels")
    op.drop_table("predictions")
