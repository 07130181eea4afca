"""The predictions ledger: predicted rows kept durably so labels that arrive later can be joined to them.

The predictor owns this database: the schema (`tables.py`, migrated by Alembic at start-up), the writes of
sampled predictions (`writer.py`, off the request path) and of labels (`store.py`, for the feedback route and
`predictor labels import`). The drift monitor only reads it. Layout and semantics: docs/interfaces.md.
"""

from __future__ import annotations


def prediction_id(request_id: str, row: int) -> str:
    """The id of one predicted row, as returned in `prediction_ids` and sent back with its label."""
    return f"{request_id}:{row}"
