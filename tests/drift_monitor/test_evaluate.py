"""Drift verdicts on the real hotel data: the window the model was fitted on vs. the latest summer."""

from __future__ import annotations

import numpy as np
import pytest

from drift_monitor.evaluate import evaluate_version
from drift_monitor.reference import Reference
from tests.drift_monitor.conftest import window_rows

SEASONAL = {"arrival_month", "historical_adr"}


def evaluate(reference: Reference, mode: str, n: int, *, seed: int = 7, correction: str = "bonferroni"):
    features, prices = window_rows(mode, n, seed)
    return evaluate_version(
        reference, features, prices.to_numpy(), min_samples=200, p_value=0.05, correction=correction
    )


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_training_period_traffic_has_no_drift(hotel_reference: Reference, correction: str) -> None:
    report = evaluate(hotel_reference, "normal", 2000, correction=correction)

    assert report.enough_data and report.samples == 2000
    assert report.drift_detected is False
    assert report.drifted_features == []
    assert report.drifted_ratio == 0
    assert report.prediction is not None and report.prediction.drifted is False
    # Effect sizes agree with the verdict: no feature moved noticeably.
    assert max(f.effect_size for f in report.features) < 0.1


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_summer_traffic_drifts_on_the_seasonal_features(hotel_reference: Reference, correction: str) -> None:
    report = evaluate(hotel_reference, "drift", 2000, correction=correction)

    assert report.drift_detected is True
    assert set(report.drifted_features) >= SEASONAL
    by_name = {f.feature: f for f in report.features}
    assert by_name["arrival_month"].test == "ks" and by_name["arrival_month"].p_value < 1e-10
    assert by_name["arrival_month"].effect_size > 0.25  # a major shift, not only a significant one
    assert 0 < report.drifted_ratio < 1
    # Summer prices are higher: the served predictions drift too.
    assert report.prediction is not None and report.prediction.drifted is True
    assert report.prediction.effect_size > 0.25


def test_bonferroni_threshold_is_the_level_divided_by_the_features(hotel_reference: Reference) -> None:
    report = evaluate(hotel_reference, "drift", 500)

    assert report.threshold == pytest.approx(0.05 / len(hotel_reference.spec.features))
    assert all(f.drifted == (f.p_value < report.threshold) for f in report.features)


def test_a_tiny_window_gives_not_enough_data(hotel_reference: Reference) -> None:
    report = evaluate(hotel_reference, "drift", 50)

    assert report.samples == 50
    assert report.enough_data is False
    assert report.drift_detected is None and report.features == [] and report.prediction is None


def test_unseen_and_missing_categories_are_tested_not_fatal(hotel_reference: Reference) -> None:
    features, prices = window_rows("normal", 1000, seed=3)
    features.loc[:299, "country"] = "atlantis"  # never seen by the trainer
    features.loc[300:349, "meal"] = None

    report = evaluate_version(
        hotel_reference, features, prices.to_numpy(), min_samples=200, p_value=0.05, correction="bonferroni"
    )

    by_name = {f.feature: f for f in report.features}
    assert by_name["country"].test == "chi2"
    assert by_name["country"].drifted and by_name["country"].effect_size > 1
    assert np.isfinite(by_name["meal"].p_value) and by_name["meal"].drifted
    assert by_name["lead_time"].drifted is False


def test_rows_missing_a_number_are_left_out(hotel_reference: Reference) -> None:
    features, prices = window_rows("normal", 300, seed=4)
    features.loc[:149, "lead_time"] = None

    report = evaluate_version(
        hotel_reference, features, prices.to_numpy(), min_samples=200, p_value=0.05, correction="bonferroni"
    )

    assert report.samples == 150
    assert report.enough_data is False
