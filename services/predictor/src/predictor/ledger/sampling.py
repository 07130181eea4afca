"""Which predictions the ledger keeps: decided by a hash of the prediction id, never by chance.

Every pod keeps the same rows for the same ids, a restart changes nothing, and a label feed can apply
the same rule to send only the labels that can match:

    int.from_bytes(hashlib.sha256(id.encode()).digest()[:8], "big") / 2**64 < rate
"""

from __future__ import annotations

import hashlib

_SCALE = float(2**64)


def is_sampled(prediction_id: str, rate: float) -> bool:
    if rate >= 1:
        return True
    if rate <= 0:
        return False
    digest = hashlib.sha256(prediction_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE < rate
