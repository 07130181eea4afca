"""heap.settle: after a model swap the heap is collected once and frozen, so later full collections
skip it; what the replaced version left in reference cycles is collected, not frozen."""

from __future__ import annotations

import gc
import weakref

from predictor import heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_settle_collects_the_old_cycles_then_freezes_the_rest() -> None:
    kept = _Node()
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle only the cyclic collector can free, like parts of an old model
    gone = weakref.ref(a)
    gc.freeze()  # as after the previous swap: the old version's objects were frozen with everything else
    del a, b
    try:
        heap.settle()
        assert gone() is None  # unfrozen and collected, not kept frozen forever
        assert gc.get_freeze_count() > 0
        assert all(
            o is not kept for o in gc.get_objects()
        )  # frozen: no longer in any generation the collector walks
    finally:
        gc.unfreeze()
