"""Benchmark: our predictor vs `mlflow models serve`, the same registered model, on 127.0.0.1.

Usage: `make bench` (= `python -m scripts.bench`), or with an MLflow server that already has a
champion: `python -m scripts.bench --tracking-uri http://127.0.0.1:5000 --duration 10`.

Both servers run one worker process and get the very same request bodies (MLflow's `dataframe_records`,
which both accept) from wrk (Debian package), one case at a time: batch 1 at concurrency 1 and 16, batch
100 at concurrency 8. Printed: throughput, p50/p99 latency, the ratios ours/peer, and the in-process floor
(the pipeline's own predict time). Numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pandas as pd
from mlflow import MlflowClient
from threadpoolctl import threadpool_limits

from scripts import local_stack as stack
from scripts.traffic import sample_records

MODEL = "hotel-adr"
ALIAS = "champion"
CASES = [(1, 1), (1, 16), (100, 8)]  # (rows per request, concurrent connections)

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


def wrk(url: str, body: Path, *, rows: int, connections: int, seconds: float, script: Path) -> Result:
    argv = [
        stack.require_binary("wrk"), "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s",
        "-s", str(script), url,
    ]  # fmt: skip
    out = subprocess.run(
        argv, capture_output=True, text=True, env={"BENCH_BODY": str(body)}, check=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    requests, duration_us, errors, p50_us, p99_us, _ = (int(float(x)) for x in line.split()[1:])
    rps = requests / (duration_us / 1e6)
    return Result(rps, rps * rows, p50_us / 1000, p99_us / 1000, errors)


def start_peer(state_dir: Path, tracking_uri: str) -> stack.Process:
    port = stack.free_port()
    argv = [
        str(stack.VENV_BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@{ALIAS}",
        "--env-manager", "local", "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    # `mlflow models serve --env-manager local` execs `uvicorn` from PATH: the venv's.
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{stack.VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    return stack.start_process(
        "mlflow-serve", argv, port=port, state_dir=state_dir, ready_path="/ping", env=env, timeout=180
    )


def in_process_floor(tracking_uri: str) -> tuple[float, float]:
    """Median ms for the pipeline's predict on 1 row, and per row on 100 rows (one OpenMP thread, as served)."""
    client = MlflowClient(tracking_uri)
    version = client.get_model_version_by_alias(MODEL, ALIAS).version
    path = mlflow.artifacts.download_artifacts(
        client.get_model_version_download_uri(MODEL, version), tracking_uri=tracking_uri
    )
    pipeline = mlflow.sklearn.load_model(path)
    one, hundred = pd.DataFrame(sample_records("normal", 1)), pd.DataFrame(sample_records("normal", 100))

    def median_ms(frame: pd.DataFrame, repeat: int) -> float:
        pipeline.predict(frame)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            pipeline.predict(frame)
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    with threadpool_limits(1):  # PREDICTOR_INFERENCE_THREADS=1
        return median_ms(one, 200), median_ms(hundred, 50) / 100


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


def check_same_predictions(ours: str, peer: str, body: bytes) -> None:
    a = httpx.post(ours, content=body, headers={"Content-Type": "application/json"}, timeout=60).json()[
        "predictions"
    ]
    b = httpx.post(peer, content=body, headers={"Content-Type": "application/json"}, timeout=60).json()[
        "predictions"
    ]
    if a != b:
        raise SystemExit("the two servers disagree on the same rows: refusing to compare their speed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tracking-uri", help="use this MLflow server (with a champion) instead of starting one"
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per case and server (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load before each case")
    args = parser.parse_args()

    state_dir = Path(tempfile.mkdtemp(prefix="predictor-bench-"))
    print(f"logs in {state_dir}", flush=True)
    with stack.local_stack(state_dir) as local:
        tracking_uri = args.tracking_uri or local.add(stack.start_mlflow(state_dir)).url
        ensure_champion(tracking_uri)
        ours = local.add(stack.start_predictor(state_dir, tracking_uri, name="bench-predictor"))
        peer = local.add(start_peer(state_dir, tracking_uri))
        urls = {"ours": f"{ours.url}/v1/models/{MODEL}:predict", "peer": f"{peer.url}/invocations"}
        script = state_dir / "post.lua"
        script.write_text(WRK_SCRIPT)
        bodies = {}
        for rows in sorted({rows for rows, _ in CASES}):
            bodies[rows] = state_dir / f"body-{rows}.json"
            bodies[rows].write_bytes(
                json.dumps({"dataframe_records": sample_records("normal", rows, seed=rows)}).encode()
            )
        check_same_predictions(urls["ours"], urls["peer"], bodies[max(bodies)].read_bytes())

        results: dict[tuple[int, int, str], Result] = {}
        for rows, connections in CASES:
            for server, url in urls.items():
                print(f"batch {rows}, concurrency {connections}: {server} ...", flush=True)
                if args.warmup:
                    wrk(
                        url,
                        bodies[rows],
                        rows=rows,
                        connections=connections,
                        seconds=args.warmup,
                        script=script,
                    )
                results[rows, connections, server] = wrk(
                    url,
                    bodies[rows],
                    rows=rows,
                    connections=connections,
                    seconds=args.duration,
                    script=script,
                )
        ours.stop()
        peer.stop()  # the floor is measured with no server competing for the CPU
        one_row_ms, per_row_ms = in_process_floor(tracking_uri)
    print_table(results, one_row_ms, per_row_ms, args.duration)


def print_table(
    results: dict[tuple[int, int, str], Result], one_row_ms: float, per_row_ms: float, seconds: float
) -> None:
    header = f"{'case':<24}{'server':<8}{'req/s':>9}{'rows/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    print(f"\nwrk, {seconds:g} s per case, one worker process per server, 127.0.0.1\n")
    print(header)
    print("-" * len(header))
    for rows, connections in CASES:
        case = f"batch {rows}, conc {connections}"
        for server, label in (("ours", "ours"), ("peer", "mlflow")):
            r = results[rows, connections, server]
            print(
                f"{case if server == 'ours' else '':<24}{label:<8}{r.requests_per_second:>9.1f}{r.rows_per_second:>10.0f}"
                f"{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}{r.errors:>8}"
            )
        ours, peer = results[rows, connections, "ours"], results[rows, connections, "peer"]
        print(
            f"{'':<24}{'ratio':<8}{ours.requests_per_second / peer.requests_per_second:>8.1f}x"
            f"{ours.rows_per_second / peer.rows_per_second:>9.1f}x"
            f"{ours.p50_ms / peer.p50_ms:>8.2f}x{ours.p99_ms / peer.p99_ms:>8.2f}x"
        )
    print(
        f"\nin-process floor (pipeline.predict, 1 thread): 1 row {one_row_ms:.2f} ms; batch of 100 {per_row_ms * 1000:.0f} µs per row"
    )


if __name__ == "__main__":
    main()
