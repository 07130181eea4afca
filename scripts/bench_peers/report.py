"""The peer comparison's arithmetic and its table: pure functions (tests/bench/test_peers_table.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

OURS = "ours"
MLSERVER = "mlserver"
# Our predictor may use a compiled tree evaluator that differs from scikit-learn by ~1e-13.
RELATIVE_TOLERANCE = 1e-9
# Issue 19's goals: against the best peer in each case, against MLServer at batch 100, and a floor.
THROUGHPUT_GOAL = 1.2
MLSERVER_ROWS_GOAL = 1.3
MLSERVER_GOAL_ROWS = 100
P50_GOAL_MS = 3.0
P50_GOAL_CASE = (1, 1)


class Figures(Protocol):
    """One server's figures in one case (scripts.bench.Result)."""

    @property
    def requests_per_second(self) -> float: ...
    @property
    def rows_per_second(self) -> float: ...
    @property
    def p50_ms(self) -> float: ...
    @property
    def p99_ms(self) -> float: ...
    @property
    def errors(self) -> int: ...
    @property
    def cores(self) -> float | None: ...


def relative_difference(a: float, b: float) -> float:
    """|a - b| relative to the larger of the two; infinite when either is NaN or infinite."""
    if a == b:
        return 0.0
    difference = abs(a - b) / max(abs(a), abs(b))
    return difference if math.isfinite(difference) else math.inf


def max_relative_difference(ours: Sequence[float], peer: Sequence[float]) -> float:
    if len(ours) != len(peer):
        return math.inf
    return max((relative_difference(a, b) for a, b in zip(ours, peer, strict=True)), default=0.0)


def check_same_predictions(
    server: str, ours: Sequence[float], peer: Sequence[float], tolerance: float = RELATIVE_TOLERANCE
) -> float:
    """The largest relative difference between `server`'s predictions and ours on the same rows;
    SystemExit when it is over `tolerance`, since a speed comparison of different answers means nothing."""
    difference = max_relative_difference(ours, peer)
    if difference > tolerance:
        raise SystemExit(
            f"{server} and ours disagree on the same {len(ours)} rows ({len(peer)} predictions from"
            f" {server}, max relative difference {difference:.3g} > {tolerance:g}): refusing to compare"
            " their speed"
        )
    return difference


@dataclass(frozen=True)
class Goal:
    case: tuple[int, int]
    description: str
    measured: str
    met: bool


@dataclass(frozen=True)
class Comparison:
    """Ours against the best peer in one case: the peer with the highest throughput, and (possibly
    another one) with the lowest p99, among the peers whose run `counts`."""

    case: tuple[int, int]
    fastest: str | None
    throughput_ratio: float
    """Our rows/s over the fastest peer's."""
    steadiest: str | None
    p99_ratio: float
    """Our p99 over the lowest peer p99."""
    mlserver_rows_ratio: float | None
    """Our rows/s over MLServer's, at the batch size of the MLServer goal."""


NO_PEER = "no peer ran without errors"


def ratio(ours: float, peer: float) -> float:
    return ours / peer if peer else math.inf


def counts(f: Figures) -> bool:
    """A run with errors, or without a single answer, is no evidence of speed."""
    return f.errors == 0 and f.rows_per_second > 0


def compare(case: tuple[int, int], figures: Mapping[str, Figures]) -> Comparison:
    """`figures` maps each server's name (ours is OURS) to its figures in `case` (rows, connections)."""
    ours = figures[OURS]
    peers = {name: f for name, f in figures.items() if name != OURS and counts(f)}
    fastest = max(peers, key=lambda name: peers[name].rows_per_second, default=None)
    steadiest = min(peers, key=lambda name: peers[name].p99_ms, default=None)
    mlserver = figures.get(MLSERVER)
    return Comparison(
        case,
        fastest,
        ratio(ours.rows_per_second, peers[fastest].rows_per_second) if fastest else math.nan,
        steadiest,
        ratio(ours.p99_ms, peers[steadiest].p99_ms) if steadiest else math.nan,
        ratio(ours.rows_per_second, mlserver.rows_per_second)
        if mlserver is not None and case[0] == MLSERVER_GOAL_ROWS
        else None,
    )


def goals(comparison: Comparison, figures: Mapping[str, Figures]) -> list[Goal]:
    """Issue 19's goals in this case; one is met only if our run `counts` (and MLServer's, for its own)."""
    case, ours = comparison.case, figures[OURS]
    clean = counts(ours)
    found = [
        Goal(
            case,
            f"throughput >= {THROUGHPUT_GOAL:g}x the best peer's",
            f"{comparison.throughput_ratio:.2f}x ({comparison.fastest})" if comparison.fastest else NO_PEER,
            clean and comparison.throughput_ratio >= THROUGHPUT_GOAL,
        ),
        Goal(
            case,
            "p99 <= the best peer's",
            f"{ours.p99_ms:.1f} ms vs {figures[comparison.steadiest].p99_ms:.1f} ms ({comparison.steadiest})"
            if comparison.steadiest
            else NO_PEER,
            clean and comparison.p99_ratio <= 1,
        ),
    ]
    if comparison.mlserver_rows_ratio is not None:
        found.append(
            Goal(
                case,
                f"rows/s >= {MLSERVER_ROWS_GOAL:g}x MLServer's",
                f"{comparison.mlserver_rows_ratio:.2f}x",
                clean and counts(figures[MLSERVER]) and comparison.mlserver_rows_ratio >= MLSERVER_ROWS_GOAL,
            )
        )
    if case == P50_GOAL_CASE:
        found.append(
            Goal(
                case,
                f"p50 <= {P50_GOAL_MS:g} ms",
                f"{ours.p50_ms:.1f} ms",
                clean and ours.p50_ms <= P50_GOAL_MS,
            )
        )
    return found


def case_label(case: tuple[int, int]) -> str:
    return f"batch {case[0]}, conc {case[1]}"


def figures_line(label: str, server: str, f: Figures) -> str:
    cores = f"{f.cores:.2f}" if f.cores is not None else "-"
    return (
        f"{label:<20}{server:<14}{f.requests_per_second:>9.1f}{f.rows_per_second:>10.0f}"
        f"{f.p50_ms:>9.1f}{f.p99_ms:>9.1f}{f.errors:>8}{cores:>8}"
    )


def ratio_line(comparison: Comparison) -> str:
    if comparison.fastest is None or comparison.steadiest is None:
        return f"{'':<20}ours / best peer: {NO_PEER}"
    line = (
        f"{'':<20}ours / best peer: throughput {comparison.throughput_ratio:.2f}x ({comparison.fastest}),"
        f" p99 {comparison.p99_ratio:.2f}x ({comparison.steadiest})"
    )
    if comparison.mlserver_rows_ratio is not None:
        line += f"; ours / mlserver rows/s {comparison.mlserver_rows_ratio:.2f}x"
    return line


def peer_table(
    results: Mapping[tuple[int, int, str], Figures],
    cases: Sequence[tuple[int, int]],
    servers: Sequence[str],
) -> list[str]:
    """The table's lines: each case's servers (ours first), its ratio line, then the goals."""
    header = f"{'case':<20}{'server':<14}{'req/s':>9}{'rows/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'cores':>8}"
    lines = [header, "-" * len(header)]
    per_case_goals = []
    for case in cases:
        figures = {server: results[(*case, server)] for server in servers}
        for n, (server, f) in enumerate(figures.items()):
            lines.append(figures_line(case_label(case) if n == 0 else "", server, f))
        comparison = compare(case, figures)
        lines.append(ratio_line(comparison))
        per_case_goals.append(goals(comparison, figures))
    lines += ["", "goals (issue 19)"]
    for case_goals in per_case_goals:
        for n, goal in enumerate(case_goals):
            verdict = "met" if goal.met else "NOT met"
            lines.append(
                f"{case_label(goal.case) if n == 0 else '':<20}{goal.description:<36}{goal.measured:<36}{verdict}"
            )
    return lines
