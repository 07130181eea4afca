"""The ledger's two tables, as SQLAlchemy Core objects (the schema the migrations create).

No foreign key from labels to predictions: a label may arrive before its prediction is written
(the writer is asynchronous), or for a row that was not sampled; the join happens at read time.
"""

from __future__ import annotations

import sqlalchemy as sa

# A prediction id is "<request id>:<row>"; request ids are at most 128 characters (middleware.py).
ID = sa.String(200)

metadata = sa.MetaData()

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("model_name", sa.String(255), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("prediction", sa.Double, nullable=False),
    # The alias that answered (champion, or the canary's alias); None before revision 0002.
    sa.Column("model_alias", sa.String(255), nullable=True),
    # The shadow model's prediction of the same row, when one scored it (PREDICTOR_SHADOW_ALIAS).
    sa.Column("shadow_version", sa.String(64), nullable=True),
    sa.Column("shadow_prediction", sa.Double, nullable=True),
    sa.Index("ix_predictions_model_time", "model_name", "model_version", "predicted_at"),
    sa.Index("ix_predictions_predicted_at", "predicted_at"),
)

labels = sa.Table(
    "labels",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("actual", sa.Double, nullable=False),
    sa.Column("label_time", sa.DateTime(timezone=True), nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_labels_received_at", "received_at"),
)
