"""SampleBuffer: bounded whatever the traffic, evictions counted, filterable by time."""

from __future__ import annotations

from predictor.samples import Sample, SampleBuffer


def sample(t: float) -> Sample:
    return Sample(t, f"r{t}", "m", "1", {"x": t}, t * 2)


def test_buffer_keeps_the_newest_rows_and_counts_the_dropped() -> None:
    buffer = SampleBuffer(size=5)
    assert buffer.extend([sample(t) for t in range(3)]) == 0
    assert buffer.extend([sample(t) for t in range(3, 10)]) == 5
    assert len(buffer) == 5
    assert buffer.dropped_total == 5
    assert [s.timestamp for s in buffer.since(0, 100)] == [5, 6, 7, 8, 9]


def test_since_is_exclusive_and_limit_keeps_the_oldest() -> None:
    buffer = SampleBuffer(size=100)
    buffer.extend([sample(t) for t in (1, 2, 2, 3, 4)])
    assert [s.timestamp for s in buffer.since(2, 100)] == [3, 4]
    assert [s.timestamp for s in buffer.since(0, 2)] == [1, 2]
    assert buffer.since(4, 10) == []
