"""Every Prometheus metric of the predictor, defined once (names and labels: docs/interfaces.md)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)

HTTP_REQUESTS = Counter(
    "predictor_http_requests",
    "HTTP requests answered, by route template and status.",
    ["route", "method", "status"],
)
HTTP_IN_FLIGHT = Gauge(
    "predictor_http_requests_in_flight",
    "HTTP requests received and not yet answered (a scrape counts itself).",
)
HTTP_DURATION = Histogram(
    "predictor_http_request_duration_seconds",
    "Time from request received to response sent, by route template.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
PREDICTIONS = Counter("predictor_predictions", "Rows predicted.", ["model_name", "model_version"])
BATCH_SIZE = Histogram(
    "predictor_batch_size", "Rows per prediction request.", ["model_name"], buckets=BATCH_BUCKETS
)
MODEL_INFO = Gauge(
    "predictor_model_info",
    "The model version being served (value 1).",
    ["model_name", "model_alias", "model_version", "run_id"],
)
MODEL_LOADED = Gauge("predictor_model_loaded", "1 once a model version is loaded and served.", ["model_name"])
MODEL_RELOADS = Counter(
    "predictor_model_reloads",
    "Attempts to load a new version the alias points to.",
    ["model_name", "outcome"],
)
SAMPLES_BUFFERED = Gauge("predictor_samples_buffered", "Predicted rows held in the sample buffer.")
SAMPLES_DROPPED = Counter("predictor_samples_dropped", "Samples evicted from the full buffer (oldest first).")

LEDGER_SAMPLED = Counter(
    "predictor_ledger_sampled_rows", "Predicted rows chosen for the ledger (PREDICTOR_LEDGER_SAMPLE_RATE)."
)
LEDGER_WRITTEN = Counter("predictor_ledger_written_rows", "Sampled rows committed to the ledger database.")
LEDGER_DROPPED = Counter(
    "predictor_ledger_dropped_rows",
    "Sampled rows that never reached the ledger, by reason (queue_full, write_failed, shutdown).",
    ["reason"],
)
LEDGER_QUEUE_ROWS = Gauge("predictor_ledger_queue_rows", "Sampled rows waiting to be written to the ledger.")
FEEDBACK_LABELS = Counter(
    "predictor_feedback_labels",
    "Labels received on the feedback route: stored and matched, stored without a prediction yet, or repeated.",
    ["outcome"],
)
for _reason in ("queue_full", "write_failed", "shutdown"):
    LEDGER_DROPPED.labels(_reason)  # exported at 0 from the start, so rate() and the alert see them
for _outcome in ("matched", "unmatched", "duplicate"):
    FEEDBACK_LABELS.labels(_outcome)


# Challengers: versions served beside the champion (PREDICTOR_SHADOW_ALIAS, PREDICTOR_CANARY_ALIAS). The
# champion's own metrics above keep their labels; these carry the alias and the role.
CHALLENGER_LOADED = Gauge(
    "predictor_challenger_loaded",
    "1 while a shadow or canary version is loaded beside the champion.",
    ["model_name", "model_alias", "role"],
)
CHALLENGER_RELOADS = Counter(
    "predictor_challenger_reloads",
    "Attempts to load a new version a shadow or canary alias points to.",
    ["model_name", "model_alias", "role", "outcome"],
)
ROUTED_REQUESTS = Counter(
    "predictor_routed_requests",
    "Predict requests by the alias that answered them (the champion's, or the canary's).",
    ["model_name", "model_alias"],
)
SHADOW_PREDICTIONS = Counter(
    "predictor_shadow_predictions",
    "Rows scored by the shadow version (never returned to a client).",
    ["model_name", "model_version"],
)
SHADOW_DROPPED = Counter(
    "predictor_shadow_dropped_rows",
    "Served rows the shadow did not score, by reason (queue_full, breaker_open, failed, shutdown).",
    ["reason"],
)
SHADOW_LATENCY = Histogram(
    "predictor_shadow_batch_duration_seconds",
    "Time the shadow version took per micro-batch.",
    ["model_name", "model_version"],
    buckets=LATENCY_BUCKETS,
)
SHADOW_ABSOLUTE_DIFFERENCE = Histogram(
    "predictor_shadow_absolute_difference",
    "|shadow prediction − served prediction| per row, in the output's unit.",
    ["model_name", "model_version", "shadow_version"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 50, 100, 200),
)
SHADOW_RELATIVE_DIFFERENCE = Histogram(
    "predictor_shadow_relative_difference",
    "|shadow prediction − served prediction| / |served prediction| per row.",
    ["model_name", "model_version", "shadow_version"],
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2),
)
SHADOW_BREAKER_OPEN = Gauge(
    "predictor_shadow_breaker_open", "1 while shadow scoring is paused after failures."
)
for _reason in ("queue_full", "breaker_open", "failed", "shutdown"):
    SHADOW_DROPPED.labels(_reason)

_prediction_value: Histogram | None = None


def prediction_value(buckets: list[float]) -> Histogram:
    """`predictor_prediction_value{model_name}`; its buckets come from settings, so it is made per app.

    The registry holds one metric per name: an app with other buckets (a test, a reload) replaces it.
    """
    global _prediction_value
    if _prediction_value is not None and list(_prediction_value._upper_bounds[:-1]) != list(buckets):
        REGISTRY.unregister(_prediction_value)
        _prediction_value = None
    if _prediction_value is None:
        _prediction_value = Histogram(
            "predictor_prediction_value",
            "Predicted values (numeric outputs).",
            ["model_name"],
            buckets=buckets,
        )
    return _prediction_value
