"""A faster evaluation of recognised tree pipelines, used only where it is proven equal to the model's own.

A scikit-learn pipeline of a ColumnTransformer (OrdinalEncoder and passthrough columns) and a tree
ensemble spends most of a small call in per-call overhead: about 4 ms in the ColumnTransformer (pandas
and validation) and 5 ms in `HistGradientBoostingRegressor.predict` (one Python-level step per tree),
whatever the row count. Two replacements:

- `LookupEncoder`: the fitted encoders turned into one dict per categorical column (the codes come from
  calling the fitted encoder itself on every category it knows, an unseen one and a missing one), and
  the numeric columns cast as the served frame would have them. Rows go straight from validated JSON
  records to the float matrix the estimator sees, with no DataFrame.
- treelite's tree interpreter (GTIL, C++, releases the GIL): the fitted ensemble imported with
  `treelite.sklearn.import_model`, ~0.1 ms for one row but ~40 µs per extra row, so it serves the calls
  below a row count measured at load (`crossover_rows`); bigger calls go to the estimator's own predict
  on the encoded matrix, whose per-row cost is lower.

Anything else (another encoder, a final step treelite cannot import, a classifier) keeps today's path.
`prove` is the gate: on the proof rows (the input example, the version's drift reference when its run
has one, and a sweep of every known category, an unseen one and a missing value) the encoder route must
equal the model's predictions exactly, and the treelite route within `RELATIVE_TOLERANCE`; a route that
fails is not used.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from predictor.schema import InputSchema

log = logging.getLogger(__name__)

RELATIVE_TOLERANCE = 1e-9
"""The treelite route's largest allowed difference from the model, relative to each prediction (summation
order differs: the largest seen on hotel_rates is 5e-15)."""
_UNSEEN = "\x00predictor-unseen-category\x00"
_CALIBRATION_ROWS = (1, 256)


@dataclass(frozen=True)
class _Lookup:
    codes: dict[Any, float]
    unseen: float
    missing: float

    @functools.cached_property
    def get(self) -> Callable[[Any, float], float]:
        """`get(value, unseen)`: the code of a category, the missing code for None."""
        return {**self.codes, None: self.missing}.get


@dataclass(frozen=True)
class LookupEncoder:
    """The pipeline's ColumnTransformer as per-column dict lookups and casts, in its output column order."""

    schema: InputSchema
    outputs: tuple[tuple[str, _Lookup | None], ...]
    """(input column, lookup) per output column; None: passed through as a number."""
    float32: frozenset[str] = frozenset()
    """Passthrough columns the served frame holds as float32 (MLflow `float`): rounded the same way here."""

    @functools.cached_property
    def _numeric(self) -> tuple[list[int], Callable[[dict[str, Any]], Any], list[int]]:
        """Output positions of the passthrough columns, their getter, and which of them are float32."""
        positions = [j for j, (_, lookup) in enumerate(self.outputs) if lookup is None]
        rounded = [k for k, j in enumerate(positions) if self.outputs[j][0] in self.float32]
        return positions, _getter([self.outputs[j][0] for j in positions]), rounded

    @functools.cached_property
    def _categorical(self) -> list[tuple[int, str, _Lookup]]:
        return [(j, name, lookup) for j, (name, lookup) in enumerate(self.outputs) if lookup is not None]

    def encode(self, rows: list[dict[str, Any]]) -> NDArray[np.float64]:
        """The float matrix of validated rows; C-level loops (itemgetter, map) do the per-row work."""
        n = len(rows)
        matrix = np.empty((n, len(self.outputs)), dtype=np.float64)
        positions, numbers_of, rounded = self._numeric
        if positions:  # numbers and booleans as float64, None as NaN: what the frame's hstack gives
            block = np.array([numbers_of(row) for row in rows], dtype=np.float64).reshape(n, len(positions))
            if rounded:
                block[:, rounded] = block[:, rounded].astype(np.float32)
            matrix[:, positions] = block
        for j, name, lookup in self._categorical:
            values = [row[name] for row in rows]
            matrix[:, j] = np.fromiter(
                map(lookup.get, values, itertools.repeat(lookup.unseen)), np.float64, n
            )
        return matrix


def _getter(names: list[str]) -> Callable[[dict[str, Any]], Any]:
    return operator.itemgetter(*names) if names else (lambda row: ())


@dataclass(frozen=True)
class FoldedTrees:
    """A HistGradientBoosting model's own trees, fed a matrix with its internal categorical codes already
    folded into the lookups: its predict re-encodes categories with a ColumnTransformer on every call
    (≈2 ms whatever the rows), which this skips. Same arithmetic as its predict, so exactly equal."""

    encoder: LookupEncoder
    model: Any

    def predict(self, rows: list[dict[str, Any]]) -> NDArray[np.float64]:
        model = self.model
        matrix = self.encoder.encode(rows)
        raw = np.zeros(
            (len(rows), model.n_trees_per_iteration_), dtype=model._baseline_prediction.dtype, order="F"
        )
        raw += model._baseline_prediction
        model._predict_iterations(matrix, model._predictors, raw, False, _openmp_threads())
        return np.asarray(model._loss.link.inverse(raw.ravel()))


@dataclass
class CompiledPipeline:
    """Predicts validated rows through the encoder, then treelite (small calls) or the final estimator."""

    encoder: LookupEncoder
    final: Any
    factor: float | None = None
    """The trainer's level recalibration (predictions × factor), when the pipeline is wrapped in it."""
    trees: FoldedTrees | None = None
    """In place of the final estimator's predict, once proven equal."""
    forest: Any = None
    """The treelite model, once proven; None: the estimator's own predict for every call."""
    crossover_rows: int = 0
    """Calls with fewer rows than this go to treelite."""

    def predict(self, rows: list[dict[str, Any]]) -> NDArray[Any]:
        if self.forest is not None and len(rows) < self.crossover_rows:
            values = _gtil_predict(self.forest, self.encoder.encode(rows))
        else:
            values = self._predict_large(rows)
        if self.factor is not None:
            values = np.asarray(values, dtype=float) * self.factor
        return values

    def _predict_large(self, rows: list[dict[str, Any]]) -> NDArray[Any]:
        if self.trees is not None:
            return self.trees.predict(rows)
        return np.asarray(self.final.predict(self.encoder.encode(rows)))

    @property
    def route(self) -> str:
        route = "lookup-encoder" + ("+folded-trees" if self.trees is not None else "")
        if self.forest is None:
            return route
        return f"{route}+treelite(<{self.crossover_rows} rows)"


def compile_pipeline(estimator: Any, schema: InputSchema) -> CompiledPipeline | None:
    """The compiled form of a recognised pipeline (before any proof), or None when it is not recognised."""
    try:
        return _compile(estimator, schema)
    except Exception as exc:  # an unusual but valid model must still load: it keeps its own predict
        log.info("compiled path does not recognise the model: %s", exc)
        return None


def _compile(estimator: Any, schema: InputSchema) -> CompiledPipeline | None:
    factor = None
    if type(estimator).__name__ == "LevelRecalibrated" and isinstance(
        getattr(estimator, "factor", None), float
    ):
        estimator, factor = estimator.pipeline, estimator.factor  # trainer/recalibration.py, stored by value
    steps = getattr(estimator, "steps", None)
    if not isinstance(steps, list) or len(steps) != 2:
        return None
    encoder = _lookup_encoder(steps[0][1], schema)
    if encoder is None:
        return None
    return CompiledPipeline(encoder=encoder, final=steps[1][1], factor=factor)


def prove(
    compiled: CompiledPipeline,
    reference: Callable[[pd.DataFrame], NDArray[Any]],
    rows: list[dict[str, Any]],
) -> CompiledPipeline | None:
    """The compiled pipeline with the routes that equal `reference` on `rows`; None when none does."""
    schema = compiled.encoder.schema
    try:  # the model itself may refuse some proof rows (e.g. NaN codes for unseen categories)
        expected = np.asarray(reference(schema.to_frame(rows)))
        encoded = compiled.predict(rows)
    except Exception as exc:
        log.info("compiled path not proven: %s", exc)
        return None
    if not np.array_equal(encoded, expected):
        log.warning("the lookup encoder differs from the model's own preprocessing: not used")
        return None
    trees = _fold_trees(compiled.encoder, compiled.final)
    if trees is not None:
        folded = CompiledPipeline(compiled.encoder, compiled.final, compiled.factor, trees)
        values = _try_predict(folded, rows)
        if values is not None and np.array_equal(values, expected):
            compiled = folded
        else:
            log.warning("the folded trees differ from the model's own predict: not used")
    forest = _import_forest(compiled.final)
    if forest is None:
        return compiled
    gtil = dataclasses.replace(compiled, forest=forest, crossover_rows=len(rows) + 1)
    values = _try_predict(gtil, rows)
    difference = float("inf") if values is None else _relative_difference(values, expected)
    if not difference <= RELATIVE_TOLERANCE:
        log.warning("treelite differs from the model by %.3g (relative): not used", difference)
        return compiled
    gtil.crossover_rows = _crossover(gtil, rows)
    return gtil


def proof_rows(
    schema: InputSchema, compiled: CompiledPipeline, known: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`known` rows, then as many more as the longest category list: each categorical column sweeps its
    known categories, an unseen value and a missing one, on top of the known rows' other values."""
    lookups = {name: lookup for name, lookup in compiled.encoder.outputs if lookup is not None}
    optional = {c.name for c in schema.columns if not c.required}
    sweeps = {
        name: [*lookup.codes, _UNSEEN] + ([None] if name in optional else [])
        for name, lookup in lookups.items()
    }
    length = max((len(values) for values in sweeps.values()), default=0)
    swept = [
        known[i % len(known)] | {name: values[i % len(values)] for name, values in sweeps.items()}
        for i in range(length)
    ]
    return known + swept


def _lookup_encoder(transformer: Any, schema: InputSchema) -> LookupEncoder | None:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    if not isinstance(transformer, ColumnTransformer) or getattr(transformer, "sparse_output_", False):
        return None
    if getattr(transformer, "_sklearn_output_config", {}).get("transform") not in (None, "default"):
        return None
    names = list(getattr(transformer, "feature_names_in_", []))
    types = {c.name: c.type.name for c in schema.columns}
    if names != [c.name for c in schema.columns]:
        return None
    outputs: list[tuple[str, _Lookup | None]] = []
    for _, step, columns in transformer.transformers_:
        selected = _column_names(columns, names)
        if selected is None:
            return None
        if step == "drop" or not selected:
            continue
        if step == "passthrough" or (
            isinstance(step, FunctionTransformer) and step.func is None and step.inverse_func is None
        ):
            if any(types[c] not in ("long", "integer", "double", "float", "boolean") for c in selected):
                return None
            outputs += [(c, None) for c in selected]
        elif isinstance(step, OrdinalEncoder) and step.handle_unknown == "use_encoded_value":
            if any(types[c] != "string" for c in selected):
                return None
            outputs += list(zip(selected, _ordinal_lookups(step, selected), strict=True))
        else:
            return None
    return LookupEncoder(schema, tuple(outputs), frozenset(c for c, t in types.items() if t == "float"))


def _column_names(columns: Any, names: list[str]) -> list[str] | None:
    if isinstance(columns, str):
        columns = [columns]
    columns = list(columns)
    if all(isinstance(c, str) for c in columns):
        return [str(c) for c in columns]
    if all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in columns):
        return [str(names[c]) for c in columns]
    return None  # boolean masks, slices, callables: not worth recognising


def _ordinal_lookups(encoder: Any, columns: list[str]) -> list[_Lookup]:
    """Codes from the fitted encoder itself: every category it knows, an unseen one and a missing one."""
    known = [list(categories) for categories in encoder.categories_]
    length = max(len(k) for k in known) + 2
    frame = pd.DataFrame(
        {
            column: pd.Series(
                values + [_UNSEEN, None] + [values[0]] * (length - len(values) - 2), dtype=object
            )
            for column, values in zip(columns, known, strict=True)
        }
    )
    codes = encoder.transform(frame)
    lookups = []
    for j, values in enumerate(known):
        column = codes[:, j]
        lookups.append(
            _Lookup(
                codes={v: float(column[i]) for i, v in enumerate(values) if isinstance(v, str)},
                unseen=float(column[len(values)]),
                missing=float(column[len(values) + 1]),
            )
        )
    return lookups


def _import_forest(final: Any) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    # HistGradientBoosting compares float64 inputs with float64 thresholds, as treelite does. The classic
    # trees (forests, GradientBoosting) round inputs to float32 first, so a value in that rounding gap
    # would take another branch in treelite: a rare row (~3 in 100,000) the proof rows may not contain.
    if not isinstance(final, HistGradientBoostingRegressor):
        return None
    try:
        import treelite.sklearn

        return treelite.sklearn.import_model(final)
    except Exception as exc:  # treelite supports the common tree ensembles; anything else keeps sklearn
        log.info("treelite cannot import %s: %s", type(final).__name__, exc)
        return None


def _gtil_predict(forest: Any, matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    import treelite.gtil

    # One thread: the inference thread's OpenMP limit (PREDICTOR_INFERENCE_THREADS) caps it anyway.
    return np.asarray(treelite.gtil.predict(forest, matrix, nthread=1), dtype=np.float64).reshape(len(matrix))


def _relative_difference(got: NDArray[Any], expected: NDArray[Any]) -> float:
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    if got.shape != expected.shape:
        return float("inf")
    # Relative to each prediction, or to the typical magnitude for predictions near zero.
    scale = np.maximum(np.abs(expected), np.mean(np.abs(expected)) or 1.0)
    return float(np.max(np.abs(got - expected) / scale))


def _crossover(compiled: CompiledPipeline, rows: list[dict[str, Any]]) -> int:
    """The row count below which treelite is faster than the route bigger calls take (the folded trees or
    the estimator's own predict), from timing both, encoding included, on the proof rows."""
    batches = {n: (rows * (n // len(rows) + 1))[:n] for n in _CALIBRATION_ROWS}

    def seconds(predict: Callable[[list[dict[str, Any]]], Any], n: int) -> float:
        predict(batches[n])
        times = []
        for _ in range(7):
            started = time.perf_counter()
            predict(batches[n])
            times.append(time.perf_counter() - started)
        return min(times)  # the cost itself: other load only ever adds to it

    small, large = _CALIBRATION_ROWS
    with threadpool_limits(1):  # as served (PREDICTOR_INFERENCE_THREADS=1); OpenMP spinning would skew it
        tree = [
            seconds(lambda r: _gtil_predict(compiled.forest, compiled.encoder.encode(r)), n)
            for n in _CALIBRATION_ROWS
        ]
        own = [seconds(compiled._predict_large, n) for n in _CALIBRATION_ROWS]
    tree_per_row, own_per_row = ((t[1] - t[0]) / (large - small) for t in (tree, own))
    if tree_per_row <= own_per_row:
        return 2**31
    return max(1, int((own[0] - tree[0]) / (tree_per_row - own_per_row)) + small)


def _try_predict(compiled: CompiledPipeline, rows: list[dict[str, Any]]) -> NDArray[Any] | None:
    try:
        return compiled.predict(rows)
    except Exception as exc:
        log.info("compiled route failed on the proof rows: %s", exc)
        return None


def _fold_trees(encoder: LookupEncoder, final: Any) -> FoldedTrees | None:
    """HistGradientBoosting's internal category re-encoding folded into the lookups (None: nothing to fold,
    or not the attributes scikit-learn 1.4–1.9 have; the proof then keeps its own predict)."""
    preprocessor = getattr(final, "_preprocessor", None)
    categorical = getattr(final, "is_categorical_", None)
    if preprocessor is None or categorical is None or not hasattr(final, "_predict_iterations"):
        return None
    if any(
        is_cat and lookup is None for is_cat, (_, lookup) in zip(categorical, encoder.outputs, strict=True)
    ):
        return None  # a numeric column the trees treat as categorical: would need a lookup of numbers
    # The preprocessor's output: the categorical features first, then the numeric ones, in order.
    order = [j for j, is_cat in enumerate(categorical) if is_cat] + [
        j for j, c in enumerate(categorical) if not c
    ]
    values = {
        j: [*lookup.codes.values(), lookup.unseen, lookup.missing]
        for j, (_, lookup) in enumerate(encoder.outputs)
        if lookup is not None and categorical[j]
    }
    length = max(len(v) for v in values.values())
    probe = np.zeros((length, len(encoder.outputs)))
    for j, column in values.items():
        probe[:, j] = column + [column[0]] * (length - len(column))
    internal = preprocessor.transform(probe)
    outputs = list(encoder.outputs)
    for j, (name, lookup) in enumerate(encoder.outputs):
        if j in values and lookup is not None:
            k = order.index(j)
            code = dict(zip(values[j], internal[:, k], strict=False))
            outputs[j] = (
                name,
                _Lookup(
                    codes={category: float(code[c]) for category, c in lookup.codes.items()},
                    unseen=float(code[lookup.unseen]),
                    missing=float(code[lookup.missing]),
                ),
            )
    folded = LookupEncoder(encoder.schema, tuple(outputs[j] for j in order), encoder.float32)
    return FoldedTrees(folded, final)


def _openmp_threads() -> int:
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    return int(_openmp_effective_n_threads())
