"""Load test for the predictor, against the local stack or a port-forwarded cluster.

    locust -f scripts/load/locustfile.py --headless -u 20 -r 10 -t 30s -H http://127.0.0.1:8080 --mode drift
    make load HOST=http://127.0.0.1:8080 USERS=20 DURATION=30s MODE=drift     # same, plus a summary

Traffic is real hotel bookings (scripts/traffic.py): `--mode normal` draws rows from the window the
champion was fitted on, `--mode drift` from the latest arrival months, which the model never saw.
Single-row and batch users run side by side; their weights, the batch size and the wait times are
options. Any failed request makes the run exit non-zero.
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, between, events, task
from locust.env import Environment

from scripts.traffic import MODES, sample_records

_rows: list[dict] = []


@events.init_command_line_parser.add_listener
def add_options(parser) -> None:
    group = parser.add_argument_group("predictor traffic")
    group.add_argument("--mode", choices=MODES, default="normal", help="which time window the rows come from")
    group.add_argument("--model-name", default="hotel-adr", help="model name in the KServe route")
    group.add_argument("--batch-size", type=int, default=50, help="rows per request of the batch user")
    group.add_argument("--single-weight", type=int, default=4, help="relative share of single-row users")
    group.add_argument("--batch-weight", type=int, default=1, help="relative share of batch users")
    group.add_argument(
        "--wait-min", type=float, default=0.05, help="seconds between a user's requests, lower bound"
    )
    group.add_argument(
        "--wait-max", type=float, default=0.2, help="seconds between a user's requests, upper bound"
    )
    group.add_argument("--seed", type=int, default=0, help="seed for the row sample")
    group.add_argument(
        "--api-token",
        default=os.environ.get("PREDICTOR_API_TOKEN", ""),
        help="bearer token, if the predictor has one",
    )


@events.init.add_listener
def load_rows(environment: Environment, **_kwargs) -> None:
    opts = environment.parsed_options
    if opts is None:  # imported as a library
        return
    # The whole window, shuffled: a small pool resampled over and over would itself look like drift.
    _rows[:] = sample_records(opts.mode, seed=opts.seed)
    SingleRowUser.weight = opts.single_weight
    BatchUser.weight = opts.batch_weight
    SingleRowUser.wait_time = BatchUser.wait_time = between(opts.wait_min, opts.wait_max)


class PredictorUser(FastHttpUser):
    abstract = True

    def post_instances(self, instances: list[dict], name: str) -> None:
        opts = self.environment.parsed_options
        headers = {"Authorization": f"Bearer {opts.api_token}"} if opts.api_token else {}
        path = f"/v1/models/{opts.model_name}:predict"
        with self.client.post(
            path, json={"instances": instances}, headers=headers, name=name, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif len(response.json().get("predictions", [])) != len(instances):
                response.failure("wrong number of predictions")


class SingleRowUser(PredictorUser):
    weight = 4
    wait_time = between(0.05, 0.2)

    @task
    def predict_one(self) -> None:
        self.post_instances([random.choice(_rows)], name="predict 1 row")


class BatchUser(PredictorUser):
    weight = 1
    wait_time = between(0.05, 0.2)

    @task
    def predict_batch(self) -> None:
        size = self.environment.parsed_options.batch_size
        self.post_instances(random.sample(_rows, size), name=f"predict {size} rows")


@events.quitting.add_listener
def fail_on_errors(environment: Environment, **_kwargs) -> None:
    """A load run with any failed request fails, like a test."""
    if environment.stats.total.num_failures > 0:
        environment.process_exit_code = 1
