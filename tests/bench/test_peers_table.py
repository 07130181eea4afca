"""The peer comparison's pure parts (scripts/bench_peers): the prediction check, the ratios and goals
per case, the table, the V2 body and the /proc parsing. No server is started."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import pytest

from scripts.bench_peers import procfs, report, servers


@dataclass(frozen=True)
class Figures:
    requests_per_second: float
    rows_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    cores: float | None = 1.0


def figures(rps: float, p50: float, p99: float, *, rows: int = 1, errors: int = 0) -> Figures:
    return Figures(rps, rps * rows, p50, p99, errors)


def test_relative_difference_is_relative_to_the_larger_value() -> None:
    assert report.relative_difference(100.0, 100.0) == 0
    assert report.relative_difference(0.0, 0.0) == 0
    assert report.relative_difference(100.0, 101.0) == pytest.approx(1 / 101)
    assert report.relative_difference(0.0, 1e-300) == 1
    assert report.relative_difference(math.nan, 1.0) == math.inf
    assert report.relative_difference(1.0, math.nan) == math.inf


def test_check_same_predictions_accepts_a_compiled_evaluators_rounding() -> None:
    ours = [38.71659647274643, 67.14560992410142, 0.0]
    peer = [38.71659647274643 * (1 + 1e-13), 67.14560992410142, 0.0]
    difference = report.check_same_predictions("mlserver", ours, peer)
    assert 0 < difference <= 1e-12


def test_check_same_predictions_refuses_different_answers() -> None:
    with pytest.raises(SystemExit, match=r"litserve and ours disagree .* refusing to compare"):
        report.check_same_predictions("litserve", [100.0, 50.0], [100.0, 50.0001])


def test_check_same_predictions_refuses_a_missing_row() -> None:
    with pytest.raises(SystemExit, match=r"bentoml and ours disagree on the same 2 rows \(1 predictions"):
        report.check_same_predictions("bentoml", [100.0, 50.0], [100.0])


def judge(case: tuple[int, int], **servers: Figures) -> tuple[report.Comparison, dict[str, report.Goal]]:
    comparison = report.compare(case, servers)
    return comparison, {goal.description: goal for goal in report.goals(comparison, servers)}


THROUGHPUT, P99 = "throughput >= 1.2x the best peer's", "p99 <= the best peer's"


def test_compare_names_the_fastest_and_the_steadiest_peer() -> None:
    comparison, goals = judge(
        (1, 16),
        ours=figures(600, 20, 100),
        mlserver=figures(400, 30, 90),
        litserve=figures(500, 25, 120),
        mlflow_serve=figures(30, 500, 900),
    )
    assert (comparison.fastest, comparison.steadiest) == ("litserve", "mlserver")
    assert comparison.throughput_ratio == pytest.approx(1.2)
    assert comparison.p99_ratio == pytest.approx(100 / 90)
    assert comparison.mlserver_rows_ratio is None  # only at batch 100
    assert {description: goal.met for description, goal in goals.items()} == {THROUGHPUT: True, P99: False}
    assert goals[P99].measured == "100.0 ms vs 90.0 ms (mlserver)"


def test_compare_leaves_out_a_peer_with_errors() -> None:
    comparison, goals = judge(
        (1, 16),
        ours=figures(600, 20, 100),
        bentoml=figures(5000, 1, 2, errors=3),
        litserve=figures(400, 25, 120),
    )
    assert (comparison.fastest, comparison.steadiest) == ("litserve", "litserve")
    assert all(goal.met for goal in goals.values())


def test_compare_leaves_out_a_peer_that_answered_nothing() -> None:
    comparison, _ = judge(
        (1, 16), ours=figures(600, 20, 100), litserve=figures(0, 0, 0), mlserver=figures(400, 25, 120)
    )
    assert (comparison.fastest, comparison.steadiest) == ("mlserver", "mlserver")


def test_compare_without_an_error_free_peer_meets_no_goal() -> None:
    comparison, goals = judge((1, 16), ours=figures(600, 20, 100), bentoml=figures(50, 1, 2, errors=1))
    assert comparison.fastest is None and math.isnan(comparison.throughput_ratio)
    assert not any(goal.met for goal in goals.values())
    assert goals[THROUGHPUT].measured == report.NO_PEER
    assert report.NO_PEER in report.ratio_line(comparison)


def test_compare_our_errors_fail_every_goal() -> None:
    _, goals = judge((1, 16), ours=figures(600, 20, 10, errors=1), litserve=figures(100, 25, 120))
    assert not any(goal.met for goal in goals.values())


def test_compare_at_batch_100_sets_the_mlserver_rows_goal() -> None:
    comparison, goals = judge(
        (100, 8),
        ours=figures(130, 50, 150, rows=100),
        mlserver=figures(100, 70, 200, rows=100),
        litserve=figures(110, 60, 140, rows=100),
    )
    assert comparison.mlserver_rows_ratio == pytest.approx(1.3)
    assert goals["rows/s >= 1.3x MLServer's"].met
    assert (goals[THROUGHPUT].measured, goals[THROUGHPUT].met) == ("1.18x (litserve)", False)


def test_compare_at_batch_1_concurrency_1_sets_the_p50_goal() -> None:
    peer = figures(40, 25, 30)
    _, fast = judge((1, 1), ours=figures(400, 2.5, 4), mlserver=peer)
    _, slow = judge((1, 1), ours=figures(80, 12.0, 15), mlserver=peer)
    assert (fast["p50 <= 3 ms"].measured, fast["p50 <= 3 ms"].met) == ("2.5 ms", True)
    assert not slow["p50 <= 3 ms"].met


def test_peer_table_lists_every_server_per_case_then_the_goals() -> None:
    names = ["ours", "mlserver", "litserve"]
    cases = [(1, 1), (100, 8)]
    results = {
        (*case, name): figures(100 + n, 10, 20 - n, rows=case[0])
        for case in cases
        for n, name in enumerate(names)
    }
    lines = report.peer_table(results, cases, names)
    assert " ".join(lines[0].split()) == "case server req/s rows/s p50 ms p99 ms errors cores"
    assert lines[2].startswith("batch 1, conc 1") and lines[2].split()[4] == "ours"
    assert "ours / best peer: throughput 0.98x (litserve), p99 1.11x (litserve)" in lines[5]
    assert lines[9].endswith("ours / mlserver rows/s 0.99x")
    goals = lines[lines.index("goals (issue 19)") + 1 :]
    # throughput, p99 and p50 at batch 1, conc 1; throughput, p99 and MLServer's rows/s at batch 100
    assert len(goals) == 3 + 3
    assert all(line.endswith("NOT met") for line in goals)


def test_v2_body_carries_the_same_rows_column_by_column() -> None:
    records = [
        {"lead_time": 95, "country": "gbr", "historical_adr": 49.5},
        {"lead_time": 26, "country": None, "historical_adr": 49.0},
    ]
    body = json.loads(servers.v2_body(records))
    assert body["parameters"] == {"content_type": "pd"}
    assert body["inputs"] == [
        {"name": "lead_time", "shape": [2, 1], "datatype": "INT64", "data": [95, 26]},
        {
            "name": "country",
            "shape": [2, 1],
            "datatype": "BYTES",
            "data": ["gbr", None],
            "parameters": {"content_type": "str"},
        },
        {"name": "historical_adr", "shape": [2, 1], "datatype": "FP64", "data": [49.5, 49.0]},
    ]
    assert json.loads(servers.records_body(records)) == {"dataframe_records": records}


def test_parse_stat_reads_a_command_name_with_spaces_and_parentheses() -> None:
    fields = ["S", "41", *["0"] * 9, "150", "30", "7", "3", *["0"] * 4, "98765", "0"]
    stat = procfs.parse_stat("1234 (python (worker) 1) " + " ".join(fields) + "\n")
    assert (stat.pid, stat.ppid, stat.cpu_ticks, stat.start_ticks) == (1234, 41, 190, 98765)


def test_cpu_seconds_counts_this_process() -> None:
    busy = sum(range(2_000_000))  # some CPU time to see
    assert busy > 0
    assert procfs.cpu_seconds(os.getpid()) > 0
    assert procfs.family(os.getpid())[0].pid == os.getpid()
