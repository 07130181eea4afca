"""`make load`: run the locustfile headless and print what the client and the predictor each saw.

    python -m scripts.load.run --host http://127.0.0.1:8080 --users 20 --duration 30s --mode normal

Writes locust's CSV and HTML reports to --report-dir. The predictor's own view comes from its
/metrics, scraped before and after (behind a Kubernetes Service that is one pod's view).
Exits non-zero when any request failed.
"""

from __future__ import annotations

import argparse
import csv
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
REPO = LOCUSTFILE.parents[2]
PREDICT_ROUTE = "/v1/models/{name}:predict"


@dataclass(frozen=True)
class ClientView:
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class ServerView:
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class LoadResult:
    exit_code: int
    client: ClientView
    server: ServerView

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.client.failures == 0

    def summary(self) -> str:
        c = self.client
        lines = [
            f"client:    {c.requests} requests, {c.failures} failed, {c.rps:.1f} req/s, "
            f"p50 {c.p50_ms:.0f} ms, p95 {c.p95_ms:.0f} ms, p99 {c.p99_ms:.0f} ms"
        ]
        s = self.server
        lines.append(
            f"predictor: {s.requests} predict requests, {s.errors} errors, "
            f"p50 ≤ {s.p50_ms:.1f} ms, p99 ≤ {s.p99_ms:.1f} ms (from its latency histogram)"
        )
        return "\n".join(lines)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base_url: str) -> Samples:
    text = httpx.get(f"{base_url.rstrip('/')}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> dict[tuple, float]:
    """Per-label-set increase of a metric whose labels include `labels`."""
    out = {}
    for (metric, lbls), value in after.items():
        if metric == name and all(dict(lbls).get(k) == v for k, v in labels.items()):
            out[lbls] = value - before.get((metric, lbls), 0.0)
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' histogram_quantile on cumulative bucket counts {upper bound: count}."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return math.nan
    rank, prev_bound, prev_count = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_bound, prev_count = bound, count
    return bounds[-1]


def server_view(before: Samples, after: Samples) -> ServerView:
    route = {"route": PREDICT_ROUTE}
    counts = _delta(before, after, "predictor_http_requests_total", **route)
    errors = sum(v for lbls, v in counts.items() if dict(lbls).get("status", "").startswith("5"))
    buckets: dict[float, float] = {}
    for lbls, v in _delta(before, after, "predictor_http_request_duration_seconds_bucket", **route).items():
        le = float(dict(lbls)["le"])
        buckets[le] = buckets.get(le, 0.0) + v
    p50 = histogram_quantile(0.5, buckets) if buckets else math.nan
    p99 = histogram_quantile(0.99, buckets) if buckets else math.nan
    return ServerView(
        requests=int(sum(counts.values())), errors=int(errors), p50_ms=p50 * 1000, p99_ms=p99 * 1000
    )


@dataclass(frozen=True)
class Load:
    """One headless locust run's shape; `extra` goes to the locustfile (e.g. --batch-size 100)."""

    users: int
    spawn_rate: float
    duration: str
    mode: str = "normal"
    extra: tuple[str, ...] = ()


def start_locust(host: str, load: Load, report_dir: Path) -> subprocess.Popen:
    """Start a headless run in the background (the e2e test retrains while it runs)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    prefix = report_dir / f"locust-{load.mode}"
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(load.users), "-r", str(load.spawn_rate), "-t", load.duration, "-H", host,
        "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary", "--loglevel", "WARNING",
        "--mode", load.mode, *load.extra,
    ]  # fmt: skip
    log = prefix.with_suffix(".log").open("w")
    return subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def client_view(report_dir: Path, mode: str) -> ClientView:
    with (report_dir / f"locust-{mode}_stats.csv").open() as f:
        total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")

    def num(key: str) -> float:
        value = total[key]
        return float(value) if value not in ("", "N/A") else math.nan

    return ClientView(
        requests=int(num("Request Count")),
        failures=int(num("Failure Count")),
        rps=num("Requests/s"),
        p50_ms=num("50%"),
        p95_ms=num("95%"),
        p99_ms=num("99%"),
    )


def finish(proc: subprocess.Popen, host: str, load: Load, report_dir: Path, before: Samples,
           timeout: float = 600) -> LoadResult:  # fmt: skip
    """Wait for a run started by start_locust and read both views."""
    exit_code = proc.wait(timeout)
    return LoadResult(exit_code, client_view(report_dir, load.mode), server_view(before, scrape(host)))


def run_load(targets: dict[str, str], load: Load, report_dir: Path) -> dict[str, LoadResult]:
    """One locust per target, all at once (several replicas, as a Service would spread the load).

    Reports go to report_dir/<target name>/.
    """
    before = {name: scrape(url) for name, url in targets.items()}
    procs = {name: start_locust(url, load, report_dir / name) for name, url in targets.items()}
    return {
        name: finish(procs[name], url, load, report_dir / name, before[name]) for name, url in targets.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make load", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="http://127.0.0.1:8080")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--duration", default="30s", help="locust run time, e.g. 30s, 2m")
    parser.add_argument("--mode", default="normal", choices=("normal", "drift", "validation"))
    parser.add_argument("--report-dir", type=Path, default=Path(".state/load"))
    args, extra = parser.parse_known_args(argv)  # the rest goes to locust (e.g. --batch-size 100)
    load = Load(args.users, args.spawn_rate, args.duration, args.mode, tuple(extra))
    try:
        result = run_load({"predictor": args.host}, load, args.report_dir)["predictor"]
    except httpx.HTTPError as exc:
        print(f"load: predictor at {args.host} is unreachable ({exc})", file=sys.stderr)
        return 2
    print(f"load: {args.users} users, {args.duration}, {args.mode} traffic against {args.host}")
    print(result.summary())
    print(f"reports: {args.report_dir}/predictor/locust-{args.mode}.html and _stats.csv")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
