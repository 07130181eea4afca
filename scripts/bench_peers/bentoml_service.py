"""The BentoML peer of `make bench`: the champion's pipeline as a batchable BentoML 1.4 API.

Served by the bench with the peer's own venv (`.state/bench/venvs/bentoml`), never imported by the repo:
`bentoml serve bentoml_service:HotelADR --working-dir scripts/bench_peers --arg model_dir=DIR`.
The API's one parameter is named `dataframe_records`, so BentoML's JSON body (one key per parameter)
is byte for byte our predictor's body; it answers a JSON list.

The parameter is a list of records, not a `pd.DataFrame`: BentoML 1.4.40's batching cannot take a
DataFrame (`PandasDataFrameContainer.get_batch_size` returns the whole shape, and the dispatcher fails
adding it to an int). A list batches the same way: requests concatenated, answers split by length.

One worker process. Adaptive batching counts list items, i.e. rows, so `max_batch_size` is in rows:
2,000, our predictor's PREDICTOR_MICROBATCH_MAX_ROWS. `max_latency_ms` is not a wait: BentoML's
dispatcher answers 503 to a request it expects to finish later than that, so it is set well above any
p99 the bench sees (a shed request would show as an error in the table).
"""

from __future__ import annotations

from typing import Any

import bentoml
import mlflow.sklearn
import pandas as pd

ARGUMENTS = bentoml.use_arguments()  # --arg model_dir=...


@bentoml.service(workers=1)
class HotelADR:
    def __init__(self) -> None:
        self.pipeline = mlflow.sklearn.load_model(ARGUMENTS.model_dir)

    @bentoml.api(batchable=True, max_batch_size=2000, max_latency_ms=5000)
    def predict(self, dataframe_records: list[dict[str, Any]]) -> list[float]:
        return self.pipeline.predict(pd.DataFrame(dataframe_records)).tolist()
