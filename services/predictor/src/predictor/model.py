"""The served model: loading a registered version from MLflow, checking it, and calling it.

No web framework here. `MlflowModelLoader` is the only place that talks to MLflow; a `LoadedModel` is
immutable, so swapping versions is one reference assignment and a request that started on the old
version finishes on it.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from numpy.typing import NDArray

from predictor import compiled as compiled_path
from predictor.errors import MlflowUnavailable, ModelLoadError
from predictor.schema import ExtraFields, InputSchema

log = logging.getLogger(__name__)

REFERENCE_ARTIFACT = "reference/reference.parquet"
REFERENCE_PROOF_ROWS = 1000
"""The drift reference the trainer logs with each run (docs/interfaces.md): real rows for proofs."""


@dataclass(frozen=True)
class VersionRef:
    """What the alias points to in the registry."""

    name: str
    alias: str
    version: str
    run_id: str | None


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """One version ready to serve: its checked schema, its predict function and where it came from.

    Immutable, so swapping versions is one reference assignment and a running request keeps its version.
    """

    ref: VersionRef
    schema: InputSchema
    signature: dict[str, Any]
    loaded_at: datetime
    local_path: Path
    predict_fn: Callable[[pd.DataFrame], Any] = field(repr=False)
    fast_path: bool = False
    """True when the flavor's predict is called directly (schema enforced by `schema`, not again by MLflow)."""
    compiled: compiled_path.CompiledPipeline | None = field(default=None, repr=False)
    """The proven faster evaluation of validated rows (compiled.py); None: the frame through `predict_fn`."""

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def version(self) -> str:
        return self.ref.version

    def predict(self, frame: pd.DataFrame) -> NDArray[Any]:
        """One prediction per row: shape (rows,) for one output, (rows, k) for k outputs."""
        return _as_rows(self.predict_fn(frame), len(frame))

    def predict_rows(self, rows: list[dict[str, Any]]) -> NDArray[Any]:
        """`predict` of validated rows, through the compiled path when there is one (no DataFrame)."""
        if self.compiled is not None:
            return _as_rows(self.compiled.predict(rows), len(rows))
        return self.predict(self.schema.to_frame(rows))

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.ref.name,
            "alias": self.ref.alias,
            "version": self.ref.version,
            "run_id": self.ref.run_id,
            "signature": self.signature,
            "loaded_at": self.loaded_at.isoformat(),
            "compiled": self.compiled.route if self.compiled else None,
        }


class MlflowModelLoader:
    """MLflow download client: resolves the alias, downloads a version, loads and smoke-tests it.

    The only class that talks to MLflow, so the follower and the tests can swap it for a stand-in.
    """

    def __init__(
        self, tracking_uri: str | None, *, extra_fields: ExtraFields = "forbid", compile: bool = True
    ):
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.extra_fields = extra_fields
        self.compile = compile
        self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self._cache = Path(tempfile.mkdtemp(prefix="predictor-models-"))

    def resolve(self, name: str, alias: str) -> VersionRef:
        """The version the alias points to; MlflowUnavailable when the server does not answer."""
        try:
            mv = self._client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            # MLflow wraps the connection error in a generic exception: the cause tells them apart.
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, requests.ConnectionError | requests.Timeout):
                raise MlflowUnavailable(
                    f"MLflow server {self.tracking_uri} is unreachable ({cause}); check MLFLOW_TRACKING_URI"
                ) from exc
            raise
        return VersionRef(name=name, alias=alias, version=str(mv.version), run_id=mv.run_id)

    def load(self, ref: VersionRef) -> LoadedModel:
        """Download, unpickle and smoke-test one version; ModelLoadError says why it cannot be served."""
        started = time.perf_counter()
        # One folder per alias: the champion and a challenger may load the same version at the same time.
        local_path = self._cache / ref.alias / f"{ref.name}-v{ref.version}"
        shutil.rmtree(local_path, ignore_errors=True)
        local_path.parent.mkdir(exist_ok=True)
        try:
            source = self._client.get_model_version_download_uri(ref.name, ref.version)
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(local_path), tracking_uri=self.tracking_uri
            )
            pyfunc = mlflow.pyfunc.load_model(path)
        except Exception as exc:
            shutil.rmtree(local_path, ignore_errors=True)
            raise ModelLoadError(f"version {ref.version} of {ref.name} could not be loaded: {exc}") from exc
        signature = pyfunc.metadata.signature
        schema = InputSchema.from_signature(signature, title=ref.name, extra=self.extra_fields)
        predict_fn, fast = _choose_predict_fn(pyfunc, schema)
        compiled = (
            self._compiled(pyfunc, schema, predict_fn, ref, local_path) if fast and self.compile else None
        )
        model = LoadedModel(
            ref=ref,
            schema=schema,
            signature={k: json.loads(v) for k, v in signature.to_dict().items() if v},
            loaded_at=datetime.now(UTC),
            local_path=local_path,
            predict_fn=predict_fn,
            fast_path=fast,
            compiled=compiled,
        )
        log.info(
            "model version loaded",
            extra={
                "version": ref.version,
                "fast_path": fast,
                "compiled": compiled.route if compiled else None,
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
        return model

    def _compiled(
        self,
        pyfunc: PyFuncModel,
        schema: InputSchema,
        predict_fn: Callable[[pd.DataFrame], Any],
        ref: VersionRef,
        local_path: Path,
    ) -> compiled_path.CompiledPipeline | None:
        """The compiled path for this version when it recognises the model and proves equal, else None."""
        started = time.perf_counter()
        try:
            proven, proof_rows = prove_compiled(
                pyfunc, schema, predict_fn, lambda: self._reference_records(ref, schema, local_path)
            )
        except Exception:  # never a reason to refuse a version: it is served by its own predict
            log.warning("compiled path check failed: serving the model's own predict", exc_info=True)
            return None
        if proof_rows:
            log.info(
                "compiled path checked",
                extra={
                    "version": ref.version,
                    "route": proven.route if proven else None,
                    "proof_rows": proof_rows,
                    "seconds": round(time.perf_counter() - started, 2),
                },
            )
        return proven

    def _reference_records(
        self, ref: VersionRef, schema: InputSchema, local_path: Path
    ) -> list[dict[str, Any]]:
        """Validated rows of the version's drift reference (the trainer logs it with the run), for the proof;
        none when the run has no reference."""
        if ref.run_id is None:
            return []
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=ref.run_id,
                artifact_path=REFERENCE_ARTIFACT,
                dst_path=str(local_path / "reference"),
                tracking_uri=self.tracking_uri,
            )
            frame = pd.read_parquet(path, engine="fastparquet")
            if len(frame) > REFERENCE_PROOF_ROWS:  # the proof holds the GIL while the old version serves
                frame = frame.sample(REFERENCE_PROOF_ROWS, random_state=0)
            return schema.validate_records(
                _records(frame[[c.name for c in schema.columns if c.name in frame]])
            )
        except Exception as exc:
            log.info("no drift reference to add to the compiled path's proof: %s", exc)
            return []

    def discard(self, model: LoadedModel) -> None:
        """Remove a version's downloaded files once it is no longer served (the model lives in memory)."""
        shutil.rmtree(model.local_path, ignore_errors=True)


def prove_compiled(
    pyfunc: PyFuncModel,
    schema: InputSchema,
    predict_fn: Callable[[pd.DataFrame], Any],
    more_rows: Callable[[], list[dict[str, Any]]] = list,
) -> tuple[compiled_path.CompiledPipeline | None, int]:
    """The proven compiled path of a loaded pyfunc (None when not recognised or not proven) and the number
    of proof rows: the input example, `more_rows()` (validated) and compiled.proof_rows' sweep."""
    candidate = compiled_path.compile_pipeline(getattr(pyfunc._model_impl, "sklearn_model", None), schema)
    if candidate is None:
        return None, 0
    known = schema.validate_records(_records(pyfunc.input_example)) + more_rows()
    rows = compiled_path.proof_rows(schema, candidate, known)
    return compiled_path.prove(candidate, lambda frame: _as_rows(predict_fn(frame), len(frame)), rows), len(
        rows
    )


def _choose_predict_fn(
    pyfunc: PyFuncModel, schema: InputSchema
) -> tuple[Callable[[pd.DataFrame], Any], bool]:
    """The flavor's own predict when it provably equals `pyfunc.predict` on the input example, else pyfunc's.

    `pyfunc.predict` re-enforces the signature on every call (a few ms per call for a wide table); our
    validated frame already has the signature's dtypes, so the flavor implementation (`_model_impl`,
    MLflow's stable developer API) can take it directly. The input example, predicted both ways, is the
    proof, and also the smoke test that rejects a version whose predict is broken.
    """
    example = pyfunc.input_example
    if not isinstance(example, pd.DataFrame) or example.empty:
        log.warning("the model has no DataFrame input example: every call goes through pyfunc.predict")
        return pyfunc.predict, False
    try:
        expected = _as_rows(pyfunc.predict(example), len(example))
    except Exception as exc:
        raise ModelLoadError(f"the model fails on its own input example: {exc}") from exc
    try:
        frame = schema.to_frame(schema.validate_records(_records(example)))
        fast = pyfunc._model_impl.predict
        same = np.array_equal(_as_rows(fast(frame), len(frame)), expected)
    except Exception as exc:
        log.warning("direct flavor predict unusable (%s): every call goes through pyfunc.predict", exc)
        return pyfunc.predict, False
    if not same:
        log.warning(
            "direct flavor predict differs from pyfunc.predict on the input example: using pyfunc.predict"
        )
        return pyfunc.predict, False
    return fast, True


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-like rows of a frame: NaN → None, numpy scalars → Python values."""
    return [
        {
            k: None
            if isinstance(v, float) and math.isnan(v)
            else v.item()
            if isinstance(v, np.generic)
            else v
            for k, v in r.items()
        }
        for r in frame.to_dict(orient="records")
    ]


def _as_rows(output: Any, rows: int) -> NDArray[Any]:
    if isinstance(output, pd.DataFrame | pd.Series):
        output = output.to_numpy()
    values = np.asarray(output)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim == 0 or values.shape[0] != rows:
        raise ValueError(f"the model returned {values.shape} for {rows} rows")
    return values
