"""Each candidate on a tiny synthetic hotel table, built as the trainer builds it (the ensemble of all
the others included): it fits the raw feature frame, predicts one number per row (also for categories it
never saw), and a seed fixes its predictions."""

from __future__ import annotations

import numpy as np
import pytest

from tests.trainer.tiny_hotel import tiny_features
from trainer.candidates import CANDIDATES
from trainer.config import CANDIDATE_NAMES, ENSEMBLE, Settings
from trainer.train import new_candidate

ALL = Settings(candidates=list(CANDIDATE_NAMES))


@pytest.fixture(scope="module")
def features():
    return tiny_features()


def test_every_configurable_candidate_exists() -> None:
    assert set(CANDIDATES) | {ENSEMBLE} == set(CANDIDATE_NAMES)


@pytest.mark.parametrize("name", CANDIDATE_NAMES)
def test_candidate_fits_and_predicts_one_finite_number_per_row(features, name: str) -> None:
    model = new_candidate(name, ALL, features).fit(features.X, features.y)
    unseen = features.X.head(7).assign(country="zzz", market_segment=None)
    for frame in (features.X, unseen):
        predictions = model.predict(frame)
        assert predictions.shape == (len(frame),)
        assert np.isfinite(predictions).all()


@pytest.mark.parametrize("name", CANDIDATE_NAMES)
def test_candidate_is_deterministic_for_a_seed(features, name: str) -> None:
    def fit_predict(seed: int) -> np.ndarray:
        model = new_candidate(name, ALL.model_copy(update={"seed": seed}), features)
        return model.fit(features.X, features.y).predict(features.X)

    # The forest averages its trees in parallel threads, so the last bits of a sum may differ.
    np.testing.assert_allclose(fit_predict(7), fit_predict(7), rtol=1e-12, atol=0)
