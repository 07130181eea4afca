"""`make demo`: the whole loop on this machine, with real processes on 127.0.0.1.

    train → register → serve (2 replicas) → normal traffic → drift check → summer traffic
          → drift check → DataDriftDetected fires in Prometheus → reaches Alertmanager
          → normal bookings + their true prices (delayed labels) → quality in line with the yardstick
          → early-summer bookings + their true prices → ModelQualityDegraded fires → reaches Alertmanager
          → the retrain controller starts one `trainer train` on the data plus the labelled ledger rows
          → the paired gate on the newest labelled rows promotes → the predictors follow @champion
          → later-summer bookings + their true prices: live MAE before vs after → the alert resolves

Processes are started by scripts/local_stack.py, the same code the integration and e2e tests use,
with the settings the chart gives them in a cluster. Everything lives in .state/demo (wiped at the start).
Ctrl-C stops every process; DEMO_EXIT=1 ends after the last stage instead of waiting.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from scripts import closed_loop
from scripts import labels as label_feed
from scripts import local_stack as stack
from scripts.load.run import Load, run_load
from scripts.traffic import hotel_windows

STATE = stack.REPO / ".state" / "demo"
# The ports `make mlflow`, `make predictor` and the chart's port-forwards use, when they are free.
PREFERRED_PORTS = {
    "mlflow": 5000,
    "predictor-0": 8080,
    "predictor-1": 8081,
    "prometheus": 9090,
    "pushgateway": 9091,
    "alertmanager": 9093,
    "retrain-controller": 8090,
}
LOAD_SECONDS = int(os.environ.get("DEMO_LOAD_SECONDS", "15"))
LOAD_USERS = int(os.environ.get("DEMO_USERS", "8"))
LEDGER_URL = f"sqlite:///{STATE / 'ledger.db'}"  # the embedded default; the chart runs PostgreSQL
LABELLED_ROWS = 400  # normal bookings with labels; the summer halves are sent whole (~1,160 rows each)
LABEL_DELAY_SECONDS = 3
# The controller's rollback check and run-status poll, quick enough for a demo (the chart: 60 s, 10 s).
CONTROLLER_SETTINGS = {
    "TRAINER_LEDGER_DATABASE_URL": LEDGER_URL,
    "TRAINER_LABEL_DELAY_SECONDS": str(LABEL_DELAY_SECONDS),
    "RETRAINING_ROLLBACK_CHECK_INTERVAL_SECONDS": "5",
}
_t0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _t0:6.1f}s] {message}", flush=True)


@contextmanager
def stage(name: str) -> Iterator[None]:
    start = time.monotonic()
    say(f"▶ {name}")
    yield
    say(f"✔ {name} ({time.monotonic() - start:.1f}s)")


def port(name: str) -> int:
    preferred = PREFERRED_PORTS[name]
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return stack.free_port()


def drift_table(report: dict) -> str:
    lines = []
    for v in report["versions"]:
        lines.append(f"  model {v['model_name']} v{v['model_version']}: {v['samples']} samples")
        if not v["enough_data"]:
            lines.append(f"  not enough data (need {report['min_samples']})")
            continue
        lines.append(f"  {'feature':32} {'test':5} {'p-value':>10} {'PSI':>7}  drifted")
        for f in sorted(v["features"], key=lambda f: f["p_value"]):
            flag = "  DRIFT" if f["drifted"] else ""
            lines.append(
                f"  {f['feature']:32} {f['test']:5} {f['p_value']:10.2e} {f['effect_size']:7.3f}{flag}"
            )
        p = v["prediction"]
        lines.append(
            f"  {'prediction':32} {'ks':5} {p['p_value']:10.2e} {p['effect_size']:7.3f}{'  DRIFT' if p['drifted'] else ''}"
        )
        verdict = "DRIFT" if v["drift_detected"] else "no drift"
        lines.append(
            f"  verdict: {verdict} — {len([f for f in v['features'] if f['drifted']])} of {len(v['features'])} "
            f"features drifted (per-feature threshold {v['threshold']:.2e}, {report['correction']})"
        )
    return "\n".join(lines)


def quality_table(quality: dict) -> str:
    lines = [
        f"  {'model version':14} {'labelled':>8} {'MAE':>7} {'RMSE':>7} {'bias':>7} {'yardstick MAE':>14} "
        f"{'ratio':>6}  verdict"
    ]
    for v in quality["versions"]:
        if not v["labelled_rows"]:
            lines.append(f"  v{v['model_version']:13} {0:8}  no labelled rows yet")
            continue
        verdict = {True: "DEGRADED", False: "ok", None: "not judged"}[v["degraded"]]
        reference = f"{v['reference_mae']:14.2f}" if v["reference_mae"] is not None else f"{'—':>14}"
        ratio = f"{v['mae_ratio']:6.2f}" if v["mae_ratio"] is not None else f"{'—':>6}"
        lines.append(
            f"  v{v['model_version']:13} {v['labelled_rows']:8} {v['mae']:7.2f} {v['rmse']:7.2f} {v['bias']:+7.2f} "
            f"{reference} {ratio}  {verdict}"
        )
    lines.append(
        f"  (alert when MAE > {quality['max_mae_ratio']} × yardstick with ≥ {quality['min_labelled_rows']} "
        "labelled rows; bias = mean of prediction − actual)"
    )
    return "\n".join(lines)


def ledger_share(loop: stack.Loop) -> str:
    """How many of the sampled predictions (locust's included) reached the ledger, from the predictors' metrics."""
    totals = label_feed.ledger_counts(loop.predictor_urls)
    sampled = totals.get("predictor_ledger_sampled_rows_total", 0.0)
    written = totals.get("predictor_ledger_written_rows_total", 0.0)
    return (
        f"ledger: {written:.0f} of {sampled:.0f} sampled predictions written ({100 * written / max(sampled, 1):.2f}%), "
        f"{totals.get('predictor_ledger_queue_rows', 0):.0f} still queued, "
        f"{totals.get('predictor_ledger_dropped_rows_total', 0):.0f} dropped"
    )


def labels_and_check(loop: stack.Loop, mode: str, rows: int | None = LABELLED_ROWS) -> dict:
    """Bookings with ids, then their true prices as labels after a delay, then the quality check
    over the predictions made since (rows=None: every row of the window)."""
    with stage(f"{mode} bookings with ids, then their true prices as labels"):
        started = time.time()
        rows = rows or len(hotel_windows().frame(mode))
        sent = label_feed.send(loop.predictor_urls, mode, rows=rows, prefix=f"{mode}-{int(started)}")
        if sent.failures:
            raise SystemExit(f"demo: predict failed: {sent.failures[0]}")
        time.sleep(LABEL_DELAY_SECONDS)  # the stay happens; the true price is known afterwards
        totals = label_feed.post_labels(loop.predictor_urls[0], sent.labels())
        say(
            f"feedback: {totals['stored']} labels stored, {totals['matched']} matched a prediction in the ledger"
        )
    with stage(f"quality check on the {mode} window (labels older than {LABEL_DELAY_SECONDS}s)"):
        window = str(int(time.time() - started) + 1)
        code, report, log = stack.run_drift_monitor(
            loop,
            window_seconds=time.time() - started + 1,
            env={
                "DRIFT_MONITOR_LEDGER_DATABASE_URL": LEDGER_URL,
                "DRIFT_MONITOR_LABEL_DELAY_SECONDS": str(LABEL_DELAY_SECONDS),
                "DRIFT_MONITOR_QUALITY_WINDOW_SECONDS": window,
            },
        )
        if code != 0 or report is None or report.get("quality") is None:
            raise SystemExit(f"demo: the quality check failed (exit {code}):\n{log[-3000:]}")
        print(quality_table(report["quality"]), flush=True)
    return report["quality"]


def traffic_and_check(loop: stack.Loop, mode: str) -> dict:
    with stage(f"{mode} traffic: locust, {LOAD_USERS} users per replica, {LOAD_SECONDS}s"):
        started = time.time()
        targets = {
            p.name: p.url for p in loop.predictors
        }  # one locust per replica, standing in for the Service
        load = Load(users=LOAD_USERS, spawn_rate=LOAD_USERS, duration=f"{LOAD_SECONDS}s", mode=mode)
        results = run_load(targets, load, STATE / "load")
        for name, result in results.items():
            say(f"{name}:\n" + result.summary())
            if not result.ok:
                raise SystemExit(f"demo: load run against {name} had failures")
    with stage(f"drift monitor on the {mode} window"):
        code, report, log = stack.run_drift_monitor(loop, window_seconds=time.time() - started + 2)
        if code != 0 or report is None:
            raise SystemExit(f"demo: drift-monitor failed (exit {code}):\n{log[-3000:]}")
        print(drift_table(report), flush=True)
    return report


def closed_loop_stages(loop: stack.Loop, before: dict) -> None:
    """ModelQualityDegraded → controller → training run → paired gate → predictors follow → later traffic."""
    mlflow_url = loop.mlflow.url
    old = closed_loop.champion_version(mlflow_url)
    with stage("waiting for ModelQualityDegraded (Prometheus rule, then Alertmanager)"):
        fired, routed = stack.wait_for_alert(loop, "ModelQualityDegraded", timeout=240)
        say(f"Prometheus: ModelQualityDegraded {fired['state']} — {fired['annotations']['description']}")
        say(f"Alertmanager: received, receivers {[r['name'] for r in routed['receivers']]}")
    with stage("retrain controller: the alert reaches it, it starts one training run (local launcher)"):
        state = closed_loop.wait_for_run_started(loop, runs_before=0, timeout=120)
        say(f"controller: started {state['running']['name'] if state['running'] else 'a run'}")
    with stage("training run: the data plus the labelled ledger rows, then the paired gate"):
        state = closed_loop.wait_for_run_finished(loop, timeout=900)
        if state["last_outcome"] != "succeeded":
            raise SystemExit(
                f"demo: the retraining run ended {state['last_outcome']}; see .state/demo/retrain-controller/runs"
            )
        new = closed_loop.champion_version(mlflow_url)
        tags = closed_loop.version_tags(mlflow_url, new if new != old else str(int(old) + 1))
        say(closed_loop.gate_line(tags))
        if new == old:
            raise SystemExit("demo: the gate kept the old champion; nothing to follow")
    with stage(f"predictors follow @champion to v{new}"):
        closed_loop.wait_for_served(loop, new, timeout=120)
    after = labels_and_check(loop, "summer_late", rows=None)
    served = {v["model_version"]: v for v in after["versions"]}.get(new)
    if served is None or served["mae"] is None:
        raise SystemExit(f"demo: no labelled rows for v{new} in the later window")
    offline = closed_loop.version_mae(mlflow_url, old, "summer_late")
    early_mae = {v["model_version"]: v for v in before["versions"]}[old]["mae"]
    say(
        f"live MAE on later traffic: before {offline:.2f}, after {served['mae']:.2f} "
        f"(v{old} scored on the same {served['labelled_rows']} rows; v{new} served them; "
        f"v{old} had {early_mae:.2f} live on the earlier summer traffic)"
    )
    prometheus = loop.prometheus
    assert prometheus is not None  # the closed loop runs only with the monitoring trio
    with stage("waiting for ModelQualityDegraded to resolve"):
        stack.wait_for(
            lambda: not stack.prometheus_alerts(prometheus.url, "ModelQualityDegraded"),
            timeout=180,
            interval=1,
            what="ModelQualityDegraded resolved in Prometheus",
        )
        say("Prometheus: ModelQualityDegraded no longer active")


def run() -> None:
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    monitoring = stack.monitoring_available()
    with stack.local_stack(STATE) as s:
        with stage("MLflow server (SQLite, artifacts served)"):
            mlflow = s.add(stack.start_mlflow(STATE, port=port("mlflow")))
        with stage("trainer: train candidates on the real data, register, gate"):
            result = stack.run_cli(
                ["trainer", "train"], env={"MLFLOW_TRACKING_URI": mlflow.url, "LOG_FORMAT": "json"}
            )
            if result.returncode != 0:
                raise SystemExit(f"demo: trainer failed:\n{result.stderr[-3000:]}")
            outcome = json.loads(result.stdout)
            say(
                f"hotel-adr v{outcome['version']} ({outcome['winner']}): test RMSE {outcome['test']['rmse']:.1f}, "
                f"R² {outcome['test']['r2']:.3f}; promoted: {outcome['promoted']} — {outcome['reason']}"
            )
        with stage(
            "2 predictor replicas" + (", Pushgateway, Alertmanager, Prometheus" if monitoring else "")
        ):
            if not monitoring:
                say(
                    "Prometheus packages missing and not installable here: no alert stage (run `make system-deps`)"
                )
            loop = stack.start_loop(
                s,
                mlflow,
                monitoring=monitoring,
                ports={n: port(n) for n in PREFERRED_PORTS},
                predictor_settings={
                    "PREDICTOR_POLL_INTERVAL_SECONDS": "5",
                    "PREDICTOR_LEDGER_DATABASE_URL": LEDGER_URL,
                },
                controller_settings=CONTROLLER_SETTINGS if monitoring else None,
            )

        normal = traffic_and_check(loop, "normal")
        say(
            "normal traffic: "
            + ("no drift" if not normal["versions"][0]["drift_detected"] else "DRIFT (unexpected)")
        )
        drifted = traffic_and_check(loop, "drift")
        features = [f["feature"] for f in drifted["versions"][0]["features"] if f["drifted"]]
        say(f"summer traffic: drift in {', '.join(features) or 'nothing'}")

        if monitoring:
            with stage("waiting for DataDriftDetected (Prometheus rule, then Alertmanager)"):
                fired, routed = stack.wait_for_alert(loop, "DataDriftDetected", timeout=240)
                say(
                    f"Prometheus: {fired['labels']['alertname']} {fired['state']} since {fired['activeAt']} — "
                    f"{fired['annotations']['summary']}"
                )
                say(f"Alertmanager: received, receivers {[r['name'] for r in routed['receivers']]}")

        labels_and_check(loop, "normal")
        early = labels_and_check(loop, "summer_early", rows=None)
        say(ledger_share(loop))
        if monitoring:
            closed_loop_stages(loop, before=early)

        urls = {"MLflow UI": mlflow.url, "predictor /docs": f"{loop.predictors[0].url}/docs"}
        if loop.prometheus and loop.alertmanager:  # started only with the Prometheus packages
            urls |= {
                "Prometheus alerts": f"{loop.prometheus.url}/alerts",
                "Alertmanager": loop.alertmanager.url,
            }
        if loop.controller:
            urls |= {
                "retrain controller": f"{loop.controller.url}/v1/state (token in .state/demo/alertmanager/token)"
            }
        print("\n".join(f"  {k:18} {v}" for k, v in urls.items()), flush=True)
        if os.environ.get("DEMO_EXIT") == "1":
            say("DEMO_EXIT=1: stopping everything")
            return
        say("running; Ctrl-C stops every process (state stays in .state/demo)")
        while all(p.alive() for p in s.processes.values()):
            time.sleep(1)
        raise SystemExit(
            "demo: a process exited: " + ", ".join(n for n, p in s.processes.items() if not p.alive())
        )


def interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # SIGTERM (e.g. from a CI runner) takes the same path as Ctrl-C: every process is stopped. SIGINT is
    # set explicitly because a shell starts background jobs with it ignored.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        run()
    except KeyboardInterrupt:
        say("interrupted: every process stopped")
        return 130
    except (stack.StackError, TimeoutError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
