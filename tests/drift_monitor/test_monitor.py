"""One run in-process: pods serving two model versions during a rollout, samples of other models, and
discovery that finds no ready pod (a skip) or pods that do not answer (a failure)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from kubernetes import client

from drift_monitor.config import Settings
from drift_monitor.errors import NoTargets
from drift_monitor.monitor import run
from scripts import local_stack as stack
from tests.drift_monitor.conftest import (
    HTTP_PORT,
    NAMESPACE,
    PREDICTOR_SERVICE,
    RegisteredReference,
    contract_samples,
    endpoint,
    endpoint_slice,
    endpoint_slice_list,
)


@pytest.fixture(autouse=True)
def _no_progress_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as the CLI sets it


def test_a_rollout_is_judged_per_model_version(
    registered_reference: RegisteredReference, fake_predictor
) -> None:
    now = time.time()
    old, new = registered_reference.version, registered_reference.next_version
    old_pod = fake_predictor(
        samples=contract_samples("normal", 400, seed=21, version=old, timestamp=now - 30)
    )
    # This pod served the old version until the alias moved, then the retrained one (on summer traffic).
    new_pod = fake_predictor(
        samples=contract_samples("normal", 50, seed=23, version=old, timestamp=now - 25)
        + contract_samples("drift", 400, seed=22, version=new, timestamp=now - 20)
    )
    settings = Settings(
        mlflow_tracking_uri=registered_reference.tracking_uri,
        model_name=registered_reference.model_name,
        targets=[old_pod.url, new_pod.url],
        min_samples=200,
    )

    report = run(settings)

    by_version = {v.model_version: v for v in report.versions}
    assert set(by_version) == {old, new}
    assert by_version[old].samples == 450 and by_version[old].drift_detected is False
    assert by_version[new].samples == 400 and by_version[new].drift_detected is True
    assert report.pods_scraped == 2 and report.samples_skipped == 0


def test_samples_of_other_models_are_skipped(
    registered_reference: RegisteredReference, fake_predictor
) -> None:
    now = time.time()
    samples = contract_samples(
        "normal", 250, seed=31, version=registered_reference.version, timestamp=now - 5
    )
    other = [{**s, "model_name": "another-model"} for s in samples[:30]]
    pod = fake_predictor(samples=samples[30:] + other)
    settings = Settings(
        mlflow_tracking_uri=registered_reference.tracking_uri,
        model_name=registered_reference.model_name,
        targets=[pod.url],
    )

    report = run(settings)

    [version] = report.versions
    assert version.samples == 220 and version.enough_data is True
    assert report.samples_skipped == 30


def test_an_empty_window_completes_without_versions(
    registered_reference: RegisteredReference, fake_predictor
) -> None:
    pod = fake_predictor(samples=[])
    settings = Settings(
        mlflow_tracking_uri=registered_reference.tracking_uri,
        model_name=registered_reference.model_name,
        targets=[pod.url],
    )

    report = run(settings)

    assert report.versions == [] and report.pods_scraped == 1


def kube_api_at(url: str) -> Callable[[], client.ApiClient]:
    return lambda: client.ApiClient(client.Configuration(host=url))


def test_no_ready_predictor_pod_skips_the_run_without_mlflow(fake_kube_api) -> None:
    loading = endpoint_slice("x", [endpoint("10.0.0.9", ready=False, pod="x")], HTTP_PORT)
    api = fake_kube_api({None: endpoint_slice_list([loading])})
    settings = Settings(
        mlflow_tracking_uri=f"http://127.0.0.1:{stack.free_port()}",  # a skip has nothing to compare
        mlflow_wait_seconds=1,
        namespace=NAMESPACE,
        predictor_service=PREDICTOR_SERVICE,
    )

    report = run(settings, kube_api=kube_api_at(api.url))

    assert report.skipped is True
    assert report.skip_reason == (
        f"no ready predictor pods behind Service {PREDICTOR_SERVICE} in namespace {NAMESPACE}: nothing to check yet"
    )
    assert (report.pods_scraped, report.pods_failed, report.versions) == (0, 0, [])


def test_discovered_pods_that_do_not_answer_fail_the_run(
    registered_reference: RegisteredReference, fake_kube_api
) -> None:
    port = stack.free_port()
    silent = endpoint_slice(
        "x", [endpoint("127.0.0.1", ready=True, pod="x")], [{**HTTP_PORT[0], "port": port}]
    )
    api = fake_kube_api({None: endpoint_slice_list([silent])})
    settings = Settings(
        mlflow_tracking_uri=registered_reference.tracking_uri,
        namespace=NAMESPACE,
        predictor_service=PREDICTOR_SERVICE,
    )

    with pytest.raises(
        NoTargets, match=rf"none of the 1 predictor pod\(s\) answered, e.g. http://127.0.0.1:{port}"
    ):
        run(settings, kube_api=kube_api_at(api.url))
