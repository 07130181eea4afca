"""The compiled path (compiled.py): recognised tree pipelines are served through lookup encoders and
treelite only where the load-time proof shows them equal to the model's own predict."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from predictor import compiled
from predictor.model import _records
from predictor.schema import InputSchema
from trainer.candidates import hist_gradient_boosting, ridge
from trainer.recalibration import LevelRecalibrated

NUMERIC = ["lead_time", "adults", "price_index", "children"]
CATEGORICAL = ["country", "meal"]


def _table(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    # Countries with a long tail: the rare ones fall under the encoder's min_frequency ("infrequent").
    countries = [f"C{int(k)}" for k in rng.zipf(1.6, n) % 60]
    X = pd.DataFrame(
        {
            "lead_time": rng.integers(0, 400, n),
            "adults": rng.integers(1, 4, n),
            "price_index": rng.normal(100, 15, n),
            "children": pd.array(rng.integers(0, 3, n), dtype="Int64").astype(object),
            "country": countries,
            "meal": rng.choice(["BB", "HB", "FB", None], n).astype(object),
        }
    )
    X.loc[rng.random(n) < 0.1, "children"] = None  # a numeric column with missing values: optional, NaN
    X["children"] = X["children"].astype("float64")
    y = 50 + 0.1 * X["lead_time"] + 20 * X["adults"] + X["price_index"] + X["country"].str.len() * 3
    return X, y.astype("float64")


@pytest.fixture(scope="module")
def fitted() -> tuple[Pipeline, InputSchema, pd.DataFrame]:
    X, y = _table(3000, seed=1)
    with threadpool_limits(1):
        pipeline = hist_gradient_boosting(NUMERIC, CATEGORICAL, seed=0).fit(X, y)
    schema = InputSchema.from_signature(infer_signature(X, y), title="hotel")
    return pipeline, schema, X


def _proven(model: Any, schema: InputSchema, X: pd.DataFrame) -> compiled.CompiledPipeline | None:
    candidate = compiled.compile_pipeline(model, schema)
    assert candidate is not None
    known = schema.validate_records(_records(X.head(200)))
    return compiled.prove(candidate, model.predict, compiled.proof_rows(schema, candidate, known))


def _fresh_rows(schema: InputSchema, seed: int) -> list[dict[str, Any]]:
    X, _ = _table(500, seed=seed)
    X.loc[::7, "country"] = "never-seen-country"
    return schema.validate_records(_records(X))


def test_a_tree_pipeline_is_served_by_treelite_within_the_tolerance_and_by_the_encoder_exactly(
    fitted,
) -> None:
    pipeline, schema, X = fitted
    proven = _proven(pipeline, schema, X)
    assert proven is not None and proven.forest is not None and proven.crossover_rows >= 1
    rows = _fresh_rows(schema, seed=2)  # unseen and missing categories, missing numbers
    expected = pipeline.predict(schema.to_frame(rows))

    treelite = dataclasses.replace(proven, crossover_rows=len(rows) + 1)
    difference = compiled._relative_difference(treelite.predict(rows), expected)
    assert difference <= compiled.RELATIVE_TOLERANCE
    folded = dataclasses.replace(proven, forest=None)
    assert folded.trees is not None
    assert np.array_equal(folded.predict(rows), expected)  # the encoder and the folded trees are exact
    encoder_only = dataclasses.replace(proven, forest=None, trees=None)
    assert np.array_equal(encoder_only.predict(rows), expected)
    for row in rows[:20]:  # one row at a time, as a lone request is served
        assert (
            compiled._relative_difference(proven.predict([row]), pipeline.predict(schema.to_frame([row])))
            <= 1e-9
        )


def test_the_encoder_gives_the_column_transformers_own_matrix(fitted) -> None:
    pipeline, schema, _ = fitted
    candidate = compiled.compile_pipeline(pipeline, schema)
    rows = _fresh_rows(schema, seed=3)
    own = pipeline.named_steps["preprocess"].transform(schema.to_frame(rows))
    np.testing.assert_array_equal(candidate.encoder.encode(rows), own)


def test_folded_trees_that_differ_are_not_used(fitted, monkeypatch) -> None:
    pipeline, schema, X = fitted
    real = compiled._fold_trees

    def off_by_one_code(encoder, final):
        trees = real(encoder, final)
        name, lookup = next((n, lk) for n, lk in trees.encoder.outputs if lk is not None)
        first = next(iter(lookup.codes))
        wrong = dataclasses.replace(lookup, codes=lookup.codes | {first: lookup.codes[first] + 1})
        outputs = tuple((n, wrong if n == name else lk) for n, lk in trees.encoder.outputs)
        return dataclasses.replace(trees, encoder=dataclasses.replace(trees.encoder, outputs=outputs))

    monkeypatch.setattr(compiled, "_fold_trees", off_by_one_code)
    proven = _proven(pipeline, schema, X)
    assert proven is not None and proven.trees is None


def test_a_wrong_encoder_is_refused_by_the_proof(fitted) -> None:
    pipeline, schema, X = fitted
    candidate = compiled.compile_pipeline(pipeline, schema)
    name, lookup = next((n, lk) for n, lk in candidate.encoder.outputs if lk is not None)
    first = next(iter(lookup.codes))
    broken = dataclasses.replace(lookup, codes=lookup.codes | {first: lookup.codes[first] + 1})
    outputs = tuple((n, broken if n == name else lk) for n, lk in candidate.encoder.outputs)
    wrong = dataclasses.replace(candidate, encoder=dataclasses.replace(candidate.encoder, outputs=outputs))
    known = schema.validate_records(_records(X.head(200)))
    assert compiled.prove(wrong, pipeline.predict, compiled.proof_rows(schema, wrong, known)) is None


def test_treelite_that_differs_is_not_used_but_the_encoder_is(fitted, monkeypatch) -> None:
    pipeline, schema, X = fitted
    real = compiled._gtil_predict
    monkeypatch.setattr(compiled, "_gtil_predict", lambda forest, matrix: real(forest, matrix) * (1 + 1e-6))
    proven = _proven(pipeline, schema, X)
    assert proven is not None and proven.forest is None
    assert proven.route == "lookup-encoder+folded-trees"


def test_the_trainers_level_recalibration_is_kept(fitted) -> None:
    pipeline, schema, X = fitted
    model = LevelRecalibrated(pipeline, 1.1)
    proven = _proven(model, schema, X)
    assert proven is not None and proven.factor == 1.1
    rows = _fresh_rows(schema, seed=4)
    expected = model.predict(schema.to_frame(rows))
    assert compiled._relative_difference(proven.predict(rows), expected) <= compiled.RELATIVE_TOLERANCE


def test_pipelines_it_does_not_know_keep_their_own_predict(fitted) -> None:
    _, schema, X = fitted
    _, y = _table(3000, seed=1)
    one_hot_ridge = ridge(NUMERIC, CATEGORICAL, seed=0).fit(X, y)  # imputers and a one-hot encoder
    assert compiled.compile_pipeline(one_hot_ridge, schema) is None
    assert compiled.compile_pipeline(object(), schema) is None


def test_the_proof_rows_sweep_every_category_an_unseen_one_and_a_missing_one(fitted) -> None:
    pipeline, schema, X = fitted
    candidate = compiled.compile_pipeline(pipeline, schema)
    known = schema.validate_records(_records(X.head(5)))
    rows = compiled.proof_rows(schema, candidate, known)
    countries = {row["country"] for row in rows}
    known_countries = set(
        pipeline.named_steps["preprocess"].named_transformers_["categorical"].categories_[0]
    )
    assert known_countries - {None} <= countries
    assert compiled._UNSEEN in countries
    assert None in {row["meal"] for row in rows}


def _ordinal_then(
    final: Any, X: pd.DataFrame, y: pd.Series, *, columns: Any = CATEGORICAL, unknown: float = -1
) -> Pipeline:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder

    encode = ColumnTransformer(
        [
            (
                "categorical",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=unknown),
                columns,
            ),
            ("numeric", "passthrough", ["lead_time", "adults", "price_index"]),
        ]
    )
    return Pipeline([("preprocess", encode), ("model", final)]).fit(X, y)


def test_a_model_that_refuses_some_proof_rows_keeps_its_own_predict(fitted) -> None:
    from sklearn.linear_model import Ridge

    _, schema, X = fitted
    _, y = _table(3000, seed=1)
    # An unseen category becomes NaN, which Ridge refuses: served rows with known categories are fine,
    # the proof's unseen-category sweep is not. The version loads all the same, on its own predict.
    model = _ordinal_then(Ridge(), X.fillna({"meal": "BB"}), y, unknown=np.nan)
    candidate = compiled.compile_pipeline(model, schema)
    assert candidate is not None
    known = schema.validate_records(_records(X.head(50)))
    assert compiled.prove(candidate, model.predict, compiled.proof_rows(schema, candidate, known)) is None


def test_classic_trees_never_go_to_treelite(fitted) -> None:
    from sklearn.ensemble import RandomForestRegressor

    _, _, X = fitted
    _, y = _table(3000, seed=1)
    forest = RandomForestRegressor(n_estimators=10, random_state=0)
    model = _ordinal_then(forest, X.fillna({"meal": "BB"}), y)
    # They round inputs to float32 before comparing with a threshold; treelite would not.
    assert compiled._import_forest(model.named_steps["model"]) is None


def test_column_selections_it_does_not_read_are_not_recognised(fitted) -> None:
    _, schema, X = fitted
    _, y = _table(3000, seed=1)
    model = _ordinal_then(_Mean(), X, y, columns=slice(4, 6))
    assert compiled.compile_pipeline(model, schema) is None


class _Mean:
    def fit(self, X: Any, y: Any) -> _Mean:
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X: Any) -> Any:
        return np.full(len(X), self.mean_)
