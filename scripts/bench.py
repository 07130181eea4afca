"""Benchmark: our predictor vs its peers, and the predictor's cost of its ledger and of a shadow model.

Usage: `make bench` (= `python -m scripts.bench`), one part only with `--only peer|ledger|shadow`, or
with an MLflow server that already has a champion: `python -m scripts.bench --tracking-uri http://127.0.0.1:5000`.

peer: ours against MLServer, LitServe, BentoML and `mlflow models serve` (scripts/bench_peers: each
peer's venv, config, batching and body), one worker each, serving the same downloaded champion, driven
by wrk (Debian package) with the same rows: batch 1 at concurrency 1 and 16, batch 100 at
concurrency 8. One server runs at a time (the machine has 2 cores: an idle server still polls,
and a peer's worker processes would compete with the one being measured): start it, check its
predictions on the batch-100 body against ours (relative difference <= 1e-9, else no comparison),
run the three cases, stop it. `--passes N` (default 2) repeats that for all five in turn, each pass
starting one server further along, and the table shows each figure's median over the passes.
Printed: throughput, p50/p99 latency, errors and the CPU cores each server used, per case the ratios
ours/best peer and the issue-19 goals (met or not), and the in-process floor (the pipeline's own
predict time).

ledger: the same predictor without a ledger, and with PREDICTOR_LEDGER_DATABASE_URL on a real PostgreSQL
(scripts/local_stack.start_postgres), once while the database runs and once after it was stopped: batch 1
at concurrency 16 and batch 100 at concurrency 8. Printed: the same latency table with the ratios
down/up and up/none, and the ledger's own counters from /metrics per run (sampled, written, dropped by
reason), read once the write queue has drained, so the share of sampled rows that reached the database
is exact; after the "down" run the database is started again and the backlog's catch-up is shown too.
`--rounds N` runs none/up/down in turn N times per case and prints medians: on a shared machine a
change in the other load then hits the three alike.

shadow: the same predictor without and with a shadow model (PREDICTOR_SHADOW_ALIAS=challenger), the
`challenger` alias on a second, different version (made with the trainer if the registry has none, see
`ensure_challenger`; the champion alias never moves): batch 1 at concurrency 16 and batch 100 at
concurrency 8, off/on in turn per round, medians. Printed: the latency table with the ratios on/off,
the issue's goal (champion p99 on/off <= 1.3x at batch 1, concurrency 16) and whether it is met, and the
shadow's counters from /metrics per run (rows scored, dropped by reason, its predict calls and their time),
read once the shadow's queue has drained: every row answered since the run began is recorded (the
predictor counts a served row once the shadow scored or dropped it) and two reads in a row agree.

Numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import sqlalchemy as sa
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from threadpoolctl import threadpool_limits

from predictor.model import prove_compiled
from predictor.schema import InputSchema
from scripts import local_stack as stack
from scripts.bench_peers import procfs, report, servers
from scripts.bench_peers.venvs import PEERS, peer_venv
from scripts.traffic import sample_records

MODEL = "hotel-adr"
ALIAS = "champion"
CASES = [(1, 1), (1, 16), (100, 8)]  # (rows per request, concurrent connections)
LEDGER_CASES = [(1, 16), (100, 8)]
LEDGER_STATES = ("none", "up", "down")  # no ledger configured; ledger database running; stopped
DRAIN_TIMEOUT_SECONDS = 120  # the writer retries every 10 s at most: a restarted database is back well within
SHADOW_ALIAS = "challenger"
SHADOW_CASES = [(1, 16), (100, 8)]
SHADOW_STATES = ("off", "on")  # PREDICTOR_SHADOW_ALIAS unset; set to SHADOW_ALIAS
# Issue 18: the champion's p99 with the shadow on at most 1.3x the p99 with it off, batch 1 at concurrency 16.
SHADOW_GOAL_CASE = (1, 16)
SHADOW_GOAL_P99_RATIO = 1.3
SHADOW_DROP_REASONS = ("queue_full", "breaker_open", "failed", "shutdown")
# The challenger the bench makes when the registry has none: the champion's own estimator family (the
# default run's winner), refit on a shorter window (test window 25% instead of 15%), so it is a different
# model with the same cost per call. A new seed would not do: the booster is deterministic without early
# stopping. The trainer promotes it to a bench-only alias (so `champion` and `previous` never move), then
# `challenger` is pointed at it.
CHALLENGER_TRAINING = {"TRAINER_CANDIDATES": "hist_gradient_boosting", "TRAINER_TEST_FRACTION": "0.25"}
CHALLENGER_TRAINING_ALIAS = "bench-challenger"

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50), latency:percentile(99),
    latency.mean))
end
"""


@dataclass(frozen=True)
class Result:
    requests_per_second: float
    rows_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    cores: float | None = None
    """CPU seconds of the server's processes per second of the run (peer part only)."""


def wrk(url: str, body: Path, *, rows: int, connections: int, seconds: float, script: Path) -> Result:
    argv = [
        stack.require_binary("wrk"), "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s",
        "-s", str(script), url,
    ]  # fmt: skip
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={"BENCH_BODY": str(body)},
        check=True,
        timeout=seconds + 60,  # wrk stops itself after `seconds`; this is in case it hangs
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    requests, duration_us, errors, p50_us, p99_us, _ = (int(float(x)) for x in line.split()[1:])
    rps = requests / (duration_us / 1e6)
    return Result(rps, rps * rows, p50_us / 1000, p99_us / 1000, errors)


def download_champion(tracking_uri: str, destination: Path) -> Path:
    """The champion's MLflow model folder (MLmodel, model.pkl), downloaded once for every peer."""
    client = MlflowClient(tracking_uri)
    version = client.get_model_version_by_alias(MODEL, ALIAS).version
    destination.mkdir(parents=True, exist_ok=True)
    path = mlflow.artifacts.download_artifacts(
        client.get_model_version_download_uri(MODEL, version),
        dst_path=str(destination),
        tracking_uri=tracking_uri,
    )
    return Path(path)


@dataclass(frozen=True)
class Floor:
    """In-process costs, one OpenMP thread as served: ms for 1 row, µs per row in a batch of 100."""

    pipeline_one_ms: float
    pipeline_per_row_us: float
    ours_one_ms: float | None
    ours_per_row_us: float | None
    route: str | None
    """The compiled route our predictor proved for this model (None: it serves the pipeline's own predict)."""


def in_process_floor(model_dir: Path) -> Floor:
    """The pipeline's own predict on a DataFrame, and what our predictor does per call in process:
    validating the records (InputSchema) and predicting them through its proven compiled path."""
    pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    pipeline = pyfunc._model_impl.sklearn_model
    one, hundred = sample_records("normal", 1), sample_records("normal", 100)
    schema = InputSchema.from_signature(pyfunc.metadata.signature, title=MODEL)
    compiled, _ = prove_compiled(pyfunc, schema, pyfunc.predict)

    def median_ms(predict: Callable[[], object], repeat: int) -> float:
        predict()
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            predict()
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    def ours(records: list[dict]) -> object:
        assert compiled is not None
        return compiled.predict(schema.validate_records(records))

    with threadpool_limits(1):  # PREDICTOR_INFERENCE_THREADS=1
        frames = pd.DataFrame(one), pd.DataFrame(hundred)
        pipeline_one = median_ms(lambda: pipeline.predict(frames[0]), 200)
        pipeline_hundred = median_ms(lambda: pipeline.predict(frames[1]), 50)
        if compiled is None:
            return Floor(pipeline_one, pipeline_hundred * 10, None, None, None)
        return Floor(
            pipeline_one,
            pipeline_hundred * 10,
            median_ms(lambda: ours(one), 500),
            median_ms(lambda: ours(hundred), 100) * 10,
            compiled.route,
        )


def ensure_champion(tracking_uri: str) -> None:
    try:
        MlflowClient(tracking_uri).get_model_version_by_alias(MODEL, ALIAS)
        return
    except mlflow.exceptions.MlflowException:
        pass
    print("training the champion (trainer train) ...", flush=True)
    result = stack.run_cli(
        ["trainer", "train"], env={"MLFLOW_TRACKING_URI": tracking_uri, "LOG_FORMAT": "json"}
    )
    if result.returncode != 0:
        raise SystemExit(f"trainer failed:\n{result.stderr[-3000:]}")


@dataclass(frozen=True)
class LedgerCounters:
    """The predictor's ledger counters (docs/interfaces.md), read from its /metrics."""

    sampled: float
    written: float
    dropped: dict[str, float]
    queued: float

    def minus(self, before: LedgerCounters) -> LedgerCounters:
        return LedgerCounters(
            self.sampled - before.sampled,
            self.written - before.written,
            {reason: n - before.dropped.get(reason, 0) for reason, n in self.dropped.items()},
            self.queued,
        )

    def plus(self, other: LedgerCounters) -> LedgerCounters:
        reasons = self.dropped.keys() | other.dropped.keys()
        return LedgerCounters(
            self.sampled + other.sampled,
            self.written + other.written,
            {reason: self.dropped.get(reason, 0) + other.dropped.get(reason, 0) for reason in reasons},
            self.queued + other.queued,
        )


def median_result(runs: list[Result]) -> Result:
    """Each figure's median over rounds (errors: their sum)."""
    cores = [r.cores for r in runs if r.cores is not None]
    return Result(
        statistics.median(r.requests_per_second for r in runs),
        statistics.median(r.rows_per_second for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.errors for r in runs),
        statistics.median(cores) if len(cores) == len(runs) else None,
    )


def wait_idle(base_url: str) -> None:
    """Until the requests wrk left in flight are answered (the scrape counts itself)."""

    def idle() -> bool:
        for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics", timeout=10).text):
            for sample in family.samples:
                if sample.name == "predictor_http_requests_in_flight":
                    return sample.value <= 1
        return False

    stack.wait_for(idle, timeout=60, what="the predictor to answer its last requests")


def ledger_counters(base_url: str) -> LedgerCounters:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    values: dict[str, float] = {}
    dropped: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "predictor_ledger_dropped_rows_total":
                dropped[sample.labels["reason"]] = sample.value
            elif not sample.labels:
                values[sample.name] = sample.value
    return LedgerCounters(
        values["predictor_ledger_sampled_rows_total"],
        values["predictor_ledger_written_rows_total"],
        dropped,
        values["predictor_ledger_queue_rows"],
    )


def wait_drained(base_url: str) -> LedgerCounters:
    """The counters once the write queue is empty: every sampled row is written or counted as dropped."""
    stack.wait_for(
        lambda: ledger_counters(base_url).queued == 0,
        timeout=DRAIN_TIMEOUT_SECONDS,
        what="the ledger's write queue to drain",
    )
    return ledger_counters(base_url)


def case_records(cases: list[tuple[int, int]]) -> dict[int, list[dict]]:
    """The rows of each batch size: the same for every server and every part of the bench."""
    return {rows: sample_records("normal", rows, seed=rows) for rows in sorted({rows for rows, _ in cases})}


def write_bodies(
    state_dir: Path,
    cases: list[tuple[int, int]],
    encode: Callable[[list[dict]], bytes] = servers.records_body,
    prefix: str = "body",
) -> dict[int, Path]:
    bodies = {}
    for rows, records in case_records(cases).items():
        bodies[rows] = state_dir / f"{prefix}-{rows}.json"
        bodies[rows].write_bytes(encode(records))
    return bodies


@dataclass(frozen=True)
class Load:
    """How each case is driven: the same wrk script, bodies, warm-up and duration for every server."""

    script: Path
    bodies: dict[int, Path]
    warmup: float
    duration: float

    def run(self, url: str, rows: int, connections: int, cpu_of: int | None = None) -> Result:
        """With `cpu_of` (a server's pid), also the cores its processes used while measured."""
        if self.warmup:
            self.drive(url, rows, connections, self.warmup)
        if cpu_of is None:
            return self.drive(url, rows, connections, self.duration)
        cpu_before, started = procfs.cpu_seconds(cpu_of), time.monotonic()
        result = self.drive(url, rows, connections, self.duration)
        cores = (procfs.cpu_seconds(cpu_of) - cpu_before) / (time.monotonic() - started)
        return replace(result, cores=cores)

    def drive(self, url: str, rows: int, connections: int, seconds: float) -> Result:
        return wrk(
            url, self.bodies[rows], rows=rows, connections=connections, seconds=seconds, script=self.script
        )


def fetch_predictions(server: servers.Server, url: str, body: Path) -> list[float]:
    response = httpx.post(
        f"{url}{server.path}",
        content=body.read_bytes(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    response.raise_for_status()
    return server.decode(response.json())


def time_server(
    server: servers.Server, load: Load, reference: list[float] | None, check_rows: int
) -> tuple[list[float], dict[tuple[int, int], Result]]:
    """Start `server`, check its predictions against `reference` (ours; None: this is ours), run every
    case, stop it. Returns its predictions and its results per case."""
    proc = server.start()
    try:
        predictions = fetch_predictions(server, proc.url, load.bodies[check_rows])
        if server.name != report.OURS:
            if reference is None:
                raise RuntimeError("ours runs first: the peers are checked against its predictions")
            difference = report.check_same_predictions(server.name, reference, predictions)
            print(
                f"{server.name}: the same predictions as ours on the {check_rows}-row body"
                f" (max relative difference {difference:.1e})",
                flush=True,
            )
        results = {}
        for rows, connections in CASES:
            print(f"batch {rows}, concurrency {connections}: {server.name} ...", flush=True)
            url = f"{proc.url}{server.path}"
            results[rows, connections] = load.run(url, rows, connections, cpu_of=proc.popen.pid)
        return predictions, results
    finally:
        proc.stop()


def bench_peer(state_dir: Path, tracking_uri: str, load: Load, passes: int = 2) -> None:
    venvs = {peer: peer_venv(peer) for peer in PEERS}  # first: a fresh venv takes minutes
    model_dir = download_champion(tracking_uri, state_dir / "champion")
    lineup = servers.peer_servers(state_dir, tracking_uri, MODEL, model_dir, venvs)
    loads = {
        server.name: replace(
            load, bodies=write_bodies(state_dir, CASES, server.encode, f"body-{server.name}")
        )
        for server in lineup
    }
    check_rows = max(rows for rows, _ in CASES)
    runs: dict[tuple[int, int, str], list[Result]] = {}
    reference: list[float] | None = None
    for pass_ in range(passes):
        # Each pass starts one server further along, so no server always runs first or last.
        shift = pass_ % len(lineup)
        for server in lineup[shift:] + lineup[:shift]:
            print(f"pass {pass_ + 1}/{passes}: {server.name}", flush=True)
            predictions, per_case = time_server(server, loads[server.name], reference, check_rows)
            if server.name == report.OURS:  # ours runs first in pass 1: the peers are checked against it
                reference = predictions
            for (rows, connections), result in per_case.items():
                runs.setdefault((rows, connections, server.name), []).append(result)
    floor = in_process_floor(model_dir)  # measured with no server competing for the CPU
    results = {key: median_result(measured) for key, measured in runs.items()}
    print_peer_table(results, [server.name for server in lineup], floor, load, passes)


def bench_ledger(
    local: stack.LocalStack, state_dir: Path, tracking_uri: str, load: Load, rounds: int = 1
) -> None:
    database = stack.start_postgres(state_dir)
    try:
        plain = local.add(stack.start_predictor(state_dir, tracking_uri, name="bench-predictor-no-ledger"))
        ledgered = local.add(
            stack.start_predictor(
                state_dir,
                tracking_uri,
                name="bench-predictor-ledger",
                settings={"PREDICTOR_LEDGER_DATABASE_URL": database.url},
            )
        )
        results: dict[tuple[int, int, str], Result] = {}
        counters: dict[tuple[int, int, str], LedgerCounters] = {}
        zero = LedgerCounters(0, 0, {}, 0)
        for rows, connections in LEDGER_CASES:
            # Rounds of none/up/down in turn: a change in the machine's other load hits all three alike.
            runs: dict[str, list[Result]] = {state: [] for state in LEDGER_STATES}
            for round_ in range(1, rounds + 1):
                for state in LEDGER_STATES:
                    server = plain if state == "none" else ledgered
                    if state == "down":
                        database.stop()
                    print(
                        f"batch {rows}, concurrency {connections}: ledger {state} (round {round_}/{rounds}) ...",
                        flush=True,
                    )
                    before = wait_drained(server.url) if state == "up" else ledger_counters(server.url)
                    runs[state].append(load.run(f"{server.url}/v1/models/{MODEL}:predict", rows, connections))
                    wait_idle(server.url)
                    key = (rows, connections, state)
                    if state == "up":
                        counters[key] = counters.get(key, zero).plus(wait_drained(server.url).minus(before))
                    elif state == "down":
                        counters[key] = counters.get(key, zero).plus(
                            ledger_counters(server.url).minus(before)
                        )
                        database.start()  # the backlog the queue held is written now
                        back = (rows, connections, "back")
                        counters[back] = counters.get(back, zero).plus(wait_drained(server.url).minus(before))
            for state, measured in runs.items():
                results[rows, connections, state] = median_result(measured)
        in_database = count_predictions(database.url)
        total = ledger_counters(ledgered.url)
        print_ledger_tables(results, counters, load.duration, rounds)
        print(
            f"\nrows in the predictions table at the end: {in_database}"
            f" (predictor_ledger_written_rows_total {total.written:.0f}, sampled {total.sampled:.0f})"
        )
    finally:
        database.remove()


def count_predictions(url: str) -> int:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM predictions")).scalar_one())
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Challenger:
    """The two versions the shadow part serves, and how far apart their predictions are."""

    champion: str
    challenger: str
    description: str


def ensure_challenger(tracking_uri: str, body: Path) -> Challenger:
    """`challenger` on a version other than the champion's (trained if need be), checked to predict otherwise."""
    client = MlflowClient(tracking_uri)
    champion = client.get_model_version_by_alias(MODEL, ALIAS)
    try:
        existing = client.get_model_version_by_alias(MODEL, SHADOW_ALIAS)
    except mlflow.exceptions.MlflowException:
        existing = None
    if existing is not None and str(existing.version) != str(champion.version):
        version = str(existing.version)
    else:
        print(
            f"training a challenger (trainer train, {' '.join(f'{k}={v}' for k, v in CHALLENGER_TRAINING.items())}) ...",
            flush=True,
        )
        result = stack.run_cli(
            ["trainer", "train"],
            env={
                "MLFLOW_TRACKING_URI": tracking_uri,
                "LOG_FORMAT": "json",
                "TRAINER_CHAMPION_ALIAS": CHALLENGER_TRAINING_ALIAS,
                **CHALLENGER_TRAINING,
            },
        )
        if result.returncode != 0:
            raise SystemExit(f"trainer failed:\n{result.stderr[-3000:]}")
        version = str(json.loads(result.stdout)["version"])
        client.set_registered_model_alias(MODEL, SHADOW_ALIAS, version)
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # bench-only: never needed again
            client.delete_registered_model_alias(MODEL, CHALLENGER_TRAINING_ALIAS)
    records = json.loads(body.read_bytes())["dataframe_records"]
    frame = pd.DataFrame(records)
    predictions = {}
    for v in (str(champion.version), version):
        path = mlflow.artifacts.download_artifacts(
            client.get_model_version_download_uri(MODEL, v), tracking_uri=tracking_uri
        )
        model = mlflow.pyfunc.load_model(path)
        predictions[v] = model.predict(frame).astype(float)
    differences = abs(predictions[version] - predictions[str(champion.version)])
    if not differences.max() > 0:
        raise SystemExit(
            f"{MODEL} v{champion.version} (@{ALIAS}) and v{version} (@{SHADOW_ALIAS}) predict the same: "
            "not a shadow worth measuring"
        )

    def kind(v: str) -> str:
        tags = client.get_model_version(MODEL, v).tags
        test_mae = f", test MAE {tags['test_mae']}" if "test_mae" in tags else ""
        return f"{tags.get('candidate', 'unknown candidate')}{test_mae}"

    description = (
        f"champion v{champion.version} ({kind(str(champion.version))}), "
        f"shadow v{version} @{SHADOW_ALIAS} ({kind(version)}); on the {len(frame)}-row body their predictions "
        f"differ on {int((differences > 0).sum())} rows, mean |difference| {differences.mean():.2f}"
    )
    return Challenger(str(champion.version), version, description)


@dataclass(frozen=True)
class ShadowCounters:
    """A predictor's served and shadow-scored rows (docs/interfaces.md), read from its /metrics."""

    answered: float
    """Predict requests answered with 200 (a response goes out before the shadow scores its rows)."""
    predicted: float
    """predictor_predictions_total: served rows once recorded, i.e. after the shadow scored or dropped them."""
    scored: float
    dropped: dict[str, float]
    calls: float = 0
    """The shadow's predict calls (predictor_shadow_batch_duration_seconds_count): one per micro-batch."""
    seconds: float = 0
    """Their time in all (predictor_shadow_batch_duration_seconds_sum)."""

    def minus(self, before: ShadowCounters) -> ShadowCounters:
        return ShadowCounters(
            self.answered - before.answered,
            self.predicted - before.predicted,
            self.scored - before.scored,
            {reason: n - before.dropped.get(reason, 0) for reason, n in self.dropped.items()},
            self.calls - before.calls,
            self.seconds - before.seconds,
        )

    def plus(self, other: ShadowCounters) -> ShadowCounters:
        reasons = self.dropped.keys() | other.dropped.keys()
        return ShadowCounters(
            self.answered + other.answered,
            self.predicted + other.predicted,
            self.scored + other.scored,
            {reason: self.dropped.get(reason, 0) + other.dropped.get(reason, 0) for reason in reasons},
            self.calls + other.calls,
            self.seconds + other.seconds,
        )


def shadow_counters(base_url: str) -> ShadowCounters:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    answered = predicted = scored = calls = seconds = 0.0
    dropped: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "predictor_http_requests_total":
                if sample.labels["route"].endswith(":predict") and sample.labels["status"] == "200":
                    answered += sample.value
            elif sample.name == "predictor_predictions_total":
                predicted += sample.value
            elif sample.name == "predictor_shadow_predictions_total":
                scored += sample.value
            elif sample.name == "predictor_shadow_dropped_rows_total":
                dropped[sample.labels["reason"]] = sample.value
            elif sample.name == "predictor_shadow_batch_duration_seconds_count":
                calls += sample.value
            elif sample.name == "predictor_shadow_batch_duration_seconds_sum":
                seconds += sample.value
    return ShadowCounters(answered, predicted, scored, dropped, calls, seconds)


def wait_shadow_drained(base_url: str, before: ShadowCounters, rows: int) -> ShadowCounters:
    """The counters once the shadow's queue is empty: every row answered since `before` (a drained
    reading; `rows` per request) is recorded, scored or dropped, and two reads in a row agree."""
    last: list[ShadowCounters] = []

    def settled() -> ShadowCounters | None:
        now = shadow_counters(base_url)
        previous = last[-1] if last else None
        last.append(now)
        recorded = now.predicted - before.predicted == (now.answered - before.answered) * rows
        return now if now == previous and recorded else None

    counters: ShadowCounters = stack.wait_for(
        settled, timeout=DRAIN_TIMEOUT_SECONDS, what="the shadow's queue to drain"
    )
    return counters


def wait_shadow_loaded(base_url: str, version: str) -> None:
    """Until GET /v1/models/<name> lists the shadow as ready, on the challenger's version."""

    def loaded() -> bool:
        response = httpx.get(f"{base_url}/v1/models/{MODEL}", timeout=10)
        challengers = response.json().get("challengers", []) if response.status_code == 200 else []
        return any(c["role"] == "shadow" and c["ready"] and str(c["version"]) == version for c in challengers)

    stack.wait_for(loaded, timeout=180, what=f"the shadow (v{version}) to be loaded")


def bench_shadow(
    local: stack.LocalStack, state_dir: Path, tracking_uri: str, load: Load, rounds: int = 1
) -> None:
    challenger = ensure_challenger(tracking_uri, load.bodies[max(load.bodies)])
    print(challenger.description, flush=True)
    servers = {
        "off": local.add(stack.start_predictor(state_dir, tracking_uri, name="bench-predictor-shadow-off")),
        "on": local.add(
            stack.start_predictor(
                state_dir,
                tracking_uri,
                name="bench-predictor-shadow-on",
                settings={"PREDICTOR_SHADOW_ALIAS": SHADOW_ALIAS},
            )
        ),
    }
    wait_shadow_loaded(servers["on"].url, challenger.challenger)
    results: dict[tuple[int, int, str], Result] = {}
    rounds_p99: dict[tuple[int, int], list[float]] = {}
    counters: dict[tuple[int, int], ShadowCounters] = {}
    for rows, connections in SHADOW_CASES:
        # Rounds of off/on in turn: a change in the machine's other load hits both alike.
        runs: dict[str, list[Result]] = {state: [] for state in SHADOW_STATES}
        for round_ in range(1, rounds + 1):
            for state in SHADOW_STATES:
                server = servers[state]
                print(
                    f"batch {rows}, concurrency {connections}: shadow {state} (round {round_}/{rounds}) ...",
                    flush=True,
                )
                before = shadow_counters(server.url)  # drained: the previous run's rows are all recorded
                runs[state].append(load.run(f"{server.url}/v1/models/{MODEL}:predict", rows, connections))
                wait_idle(server.url)
                delta = wait_shadow_drained(server.url, before, rows).minus(before)
                if state == "on":
                    zero = ShadowCounters(0, 0, 0, {})
                    counters[rows, connections] = counters.get((rows, connections), zero).plus(delta)
            rounds_p99.setdefault((rows, connections), []).append(
                runs["on"][-1].p99_ms / runs["off"][-1].p99_ms
            )
        for state, measured in runs.items():
            results[rows, connections, state] = median_result(measured)
    print_shadow_tables(results, counters, rounds_p99, challenger, load, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tracking-uri", help="use this MLflow server (with a champion) instead of starting one"
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per case and server (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load before each case")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="ledger and shadow parts: rounds of none/up/down (off/on) per case, medians printed (default 1)",
    )
    parser.add_argument(
        "--passes",
        type=int,
        default=2,
        help="peer part: passes over all servers, one at a time, medians printed (default 2)",
    )
    parser.add_argument(
        "--only",
        choices=("peer", "ledger", "shadow"),
        help="run one part: `peer` (ours vs MLServer, LitServe, BentoML and mlflow models serve), `ledger` "
        "(database up vs down) or `shadow` (a shadow model off vs on); default all three",
    )
    args = parser.parse_args()

    state_dir = Path(tempfile.mkdtemp(prefix="predictor-bench-"))
    print(f"logs in {state_dir}", flush=True)
    with stack.local_stack(state_dir) as local:
        tracking_uri = args.tracking_uri or local.add(stack.start_mlflow(state_dir)).url
        ensure_champion(tracking_uri)
        script = state_dir / "post.lua"
        script.write_text(WRK_SCRIPT)
        load = Load(script, write_bodies(state_dir, CASES), args.warmup, args.duration)
        if args.only in (None, "peer"):
            bench_peer(state_dir, tracking_uri, load, args.passes)
        if args.only in (None, "ledger"):
            bench_ledger(local, state_dir, tracking_uri, load, args.rounds)
        if args.only in (None, "shadow"):
            bench_shadow(local, state_dir, tracking_uri, load, args.rounds)


def print_peer_table(
    results: dict[tuple[int, int, str], Result],
    names: list[str],
    floor: Floor,
    load: Load,
    passes: int,
) -> None:
    medians = f", medians of {passes} passes" if passes > 1 else ""
    print(
        f"\npeers: wrk, {load.duration:g} s per case after {load.warmup:g} s of warm-up{medians}; one server at a"
        " time, one worker each, 127.0.0.1; cores = CPU seconds of the server's processes per second of the run\n"
    )
    print("\n".join(report.peer_table(results, CASES, names)))
    print(
        f"\nin-process floor, 1 thread: pipeline.predict 1 row {floor.pipeline_one_ms:.2f} ms, batch of 100"
        f" {floor.pipeline_per_row_us:.0f} µs per row"
    )
    if floor.ours_one_ms is not None and floor.ours_per_row_us is not None:
        print(
            f"  ours (validation + {floor.route}): 1 row {floor.ours_one_ms:.3f} ms, batch of 100"
            f" {floor.ours_per_row_us:.1f} µs per row"
        )


def print_ledger_tables(
    results: dict[tuple[int, int, str], Result],
    counters: dict[tuple[int, int, str], LedgerCounters],
    seconds: float,
    rounds: int,
) -> None:
    header = f"{'case':<24}{'ledger':<8}{'req/s':>9}{'rows/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    medians = f", median of {rounds} rounds" if rounds > 1 else ""
    print(
        f"\nledger: predict with the ledger database up vs down; wrk, {seconds:g} s per case{medians},"
        " one worker process, PostgreSQL on 127.0.0.1\n"
    )
    print(header)
    print("-" * len(header))
    for rows, connections in LEDGER_CASES:
        case = f"batch {rows}, conc {connections}"
        for state in LEDGER_STATES:
            r = results[rows, connections, state]
            print(
                f"{case if state == 'none' else '':<24}{state:<8}{r.requests_per_second:>9.1f}{r.rows_per_second:>10.0f}"
                f"{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}{r.errors:>8}"
            )
        none, up, down = (results[rows, connections, state] for state in LEDGER_STATES)
        for label, a, b in (("up/none", up, none), ("down/up", down, up)):
            print(
                f"{'':<24}{label:<8}{a.requests_per_second / b.requests_per_second:>8.2f}x"
                f"{a.rows_per_second / b.rows_per_second:>9.2f}x"
                f"{a.p50_ms / b.p50_ms:>8.2f}x{a.p99_ms / b.p99_ms:>8.2f}x"
            )

    header = (
        f"{'case':<24}{'database':<16}{'sampled':>9}{'written':>9}{'queue_full':>11}{'write_failed':>13}"
        f"{'shutdown':>9}{'queued':>8}{'written %':>10}"
    )
    print(
        "\nledger rows (predictor_ledger_* deltas from /metrics, warm-up included"
        + (f", summed over {rounds} rounds" if rounds > 1 else "")
        + "; up: once the queue drained; down: when wrk ended; restarted: the same rows once the"
        " database is back and the queue drained)\n"
    )
    print(header)
    print("-" * len(header))
    labels = {"up": "up (drained)", "down": "down (at end)", "back": "restarted"}
    for rows, connections in LEDGER_CASES:
        case = f"batch {rows}, conc {connections}"
        for n, state in enumerate(("up", "down", "back")):
            c = counters[rows, connections, state]
            share = 100 * c.written / c.sampled if c.sampled else float("nan")
            print(
                f"{case if n == 0 else '':<24}{labels[state]:<16}{c.sampled:>9.0f}{c.written:>9.0f}"
                f"{c.dropped.get('queue_full', 0):>11.0f}{c.dropped.get('write_failed', 0):>13.0f}"
                f"{c.dropped.get('shutdown', 0):>9.0f}{c.queued:>8.0f}{share:>9.1f}%"
            )


def print_shadow_tables(
    results: dict[tuple[int, int, str], Result],
    counters: dict[tuple[int, int], ShadowCounters],
    rounds_p99: dict[tuple[int, int], list[float]],
    challenger: Challenger,
    load: Load,
    rounds: int,
) -> None:
    seconds = load.duration
    header = f"{'case':<24}{'shadow':<8}{'req/s':>9}{'rows/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    medians = f", median of {rounds} rounds" if rounds > 1 else ""
    print(
        f"\nshadow: the champion's latency with PREDICTOR_SHADOW_ALIAS unset (off) and ={SHADOW_ALIAS} (on);"
        f" wrk, {seconds:g} s per case{medians}, one worker process, 127.0.0.1\n{challenger.description}\n"
    )
    print(header)
    print("-" * len(header))
    for rows, connections in SHADOW_CASES:
        case = f"batch {rows}, conc {connections}"
        for state in SHADOW_STATES:
            r = results[rows, connections, state]
            print(
                f"{case if state == 'off' else '':<24}{state:<8}{r.requests_per_second:>9.1f}{r.rows_per_second:>10.0f}"
                f"{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}{r.errors:>8}"
            )
        off, on = results[rows, connections, "off"], results[rows, connections, "on"]
        print(
            f"{'':<24}{'on/off':<8}{on.requests_per_second / off.requests_per_second:>8.2f}x"
            f"{on.rows_per_second / off.rows_per_second:>9.2f}x"
            f"{on.p50_ms / off.p50_ms:>8.2f}x{on.p99_ms / off.p99_ms:>8.2f}x"
        )
        if rounds > 1:
            per_round = ", ".join(f"{ratio:.2f}x" for ratio in rounds_p99[rows, connections])
            print(f"{'':<24}p99 on/off per round: {per_round}")

    header = (
        f"{'case':<24}{'served':>9}{'scored':>9}{'scored %':>9}"
        + "".join(f"{reason:>13}" for reason in SHADOW_DROP_REASONS)
        + f"{'calls':>8}{'rows/call':>10}{'ms/call':>8}{'busy %':>7}"
    )
    loaded = rounds * (load.warmup + load.duration)
    print(
        "\nshadow rows with the shadow on (/metrics deltas, warm-up included"
        + (f", summed over {rounds} rounds" if rounds > 1 else "")
        + "; read once the shadow's queue drained): served = predictor_predictions_total,"
        " scored = predictor_shadow_predictions_total, then predictor_shadow_dropped_rows_total by reason;"
        " the shadow's predict calls (predictor_shadow_batch_duration_seconds: wall time, waiting for the GIL"
        f" included) and their time as a share of the {loaded:g} s under load (over 100%: the shadow was still"
        " scoring its queue after wrk stopped)\n"
    )
    print(header)
    print("-" * len(header))
    for rows, connections in SHADOW_CASES:
        c = counters[rows, connections]
        share = 100 * c.scored / c.predicted if c.predicted else float("nan")
        per_call = c.scored / c.calls if c.calls else float("nan")
        ms_per_call = 1000 * c.seconds / c.calls if c.calls else float("nan")
        print(
            f"{f'batch {rows}, conc {connections}':<24}{c.predicted:>9.0f}{c.scored:>9.0f}{share:>8.1f}%"
            + "".join(f"{c.dropped.get(reason, 0):>13.0f}" for reason in SHADOW_DROP_REASONS)
            + f"{c.calls:>8.0f}{per_call:>10.1f}{ms_per_call:>8.1f}{100 * c.seconds / loaded:>6.0f}%"
        )

    rows, connections = SHADOW_GOAL_CASE
    ratio = results[rows, connections, "on"].p99_ms / results[rows, connections, "off"].p99_ms
    verdict = "met" if ratio <= SHADOW_GOAL_P99_RATIO else "NOT met"
    print(
        f"\ngoal (issue 18): champion p99 on/off <= {SHADOW_GOAL_P99_RATIO:g}x at batch {rows}, concurrency"
        f" {connections}: {ratio:.2f}x, {verdict}"
    )


if __name__ == "__main__":
    main()
