"""The canary split: a fixed share of users answered by the canary alias's version, the same user always by
the same version (sticky), on every pod alike.

The arm is a pure function of the routing key (a hash, not a random draw), so no state is shared between
pods and a user's requests never flip between versions while the percentage stays the same. Raising the
percentage only moves users from the champion to the canary, never back.
"""

from __future__ import annotations

import hashlib

from predictor.follower import ChallengerFollower
from predictor.model import LoadedModel

BUCKETS = 10_000  # percent with two decimals


def bucket(routing_key: str) -> int:
    """0 … BUCKETS-1, uniform over keys and the same in every process (unlike Python's salted `hash`)."""
    digest = hashlib.blake2b(routing_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


class CanarySplit:
    def __init__(self, follower: ChallengerFollower, percent: float):
        self.follower = follower
        self.percent = percent
        self._threshold = round(percent * BUCKETS / 100)

    def choose(self, champion: LoadedModel, routing_key: str) -> LoadedModel:
        """The version that answers this key: the canary's for its share (once loaded), else the champion."""
        canary = self.follower.current
        if canary is None or bucket(routing_key) >= self._threshold:
            return champion
        return canary
