"""The LitServe peer of `make bench`: the champion's pipeline behind LitServe's request batching.

Run by the bench with the peer's own venv (`.state/bench/venvs/litserve`), never imported by the repo:
`python litserve_server.py --model-dir DIR --port PORT`. It takes our predictor's body,
`{"dataframe_records": [...]}`, and answers `{"predictions": [...]}`.

One inference worker and one API server process (LitServe always runs them apart), batching as
issue 19 measured it: up to 32 requests per model call, waiting at most 20 ms for them.
"""

from __future__ import annotations

import argparse

import litserve as ls
import mlflow.sklearn
import numpy as np
import pandas as pd

MAX_BATCH_SIZE = 32  # requests, not rows
BATCH_TIMEOUT_SECONDS = 0.02


class PipelineAPI(ls.LitAPI):
    def __init__(self, model_dir: str) -> None:
        super().__init__(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT_SECONDS)
        self.model_dir = model_dir

    def setup(self, device: str) -> None:
        self.pipeline = mlflow.sklearn.load_model(self.model_dir)

    def decode_request(self, request: dict) -> pd.DataFrame:
        return pd.DataFrame(request["dataframe_records"])

    def batch(self, frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
        return frames  # kept apart: predict needs each request's row count to split the answer

    def predict(self, frames: list[pd.DataFrame]) -> list[np.ndarray]:
        predictions = self.pipeline.predict(pd.concat(frames, ignore_index=True))
        return np.split(predictions, np.cumsum([len(frame) for frame in frames])[:-1])

    def unbatch(self, per_request: list[np.ndarray]) -> list[np.ndarray]:
        return per_request

    def encode_response(self, predictions: np.ndarray) -> dict:
        return {"predictions": predictions.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="the champion's downloaded MLflow model")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ls.LitServer(PipelineAPI(args.model_dir), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, generate_client_file=False)


if __name__ == "__main__":
    main()
