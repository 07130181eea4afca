"""The peers `make bench` compares our predictor with (issue 19), and the comparison's table.

Five servers, one at a time, each from the same downloaded champion (`models:/hotel-adr@champion`):

- `ours`: the predictor (`stack.start_predictor`, one uvicorn worker, one inference thread), loading
  the champion from MLflow as it does in production.
- `mlserver`: MLServer 1.7.1 with mlserver-mlflow (`mlserver/settings.json`, `mlserver/model-settings.json`,
  filled in with ports and the model's folder). `parallel_workers: 1`, MLServer's default: one inference
  worker process, beside the process that speaks HTTP and forms the batches; that is what "one worker"
  means here (0 would run the model on the HTTP process's event loop). Adaptive batching: up to 16
  requests, waiting at most 5 ms (`max_batch_size`, `max_batch_time`).
- `litserve`: LitServe (`litserve_server.py`): one inference worker, one API server process, up to 32
  requests per call, waiting at most 20 ms.
- `bentoml`: BentoML 1.4 (`bentoml_service.py`): one worker, a batchable API of up to 2,000 rows.
- `mlflow-serve`: `mlflow models serve --env-manager local --workers 1` from the repo's venv.

Each of the three framework peers runs from its own venv under `.state/bench/venvs/<peer>`, pip-installed
from `requirements-<peer>.txt` (pinned, with the model's scikit-learn, numpy and pandas) and made anew
when that file changes (`venvs.py`).

Bodies: the same rows for everyone (`scripts.traffic.sample_records`, seeded by the batch size). Ours,
`mlflow models serve`, LitServe and BentoML take our body, `{"dataframe_records": [...]}`, byte for
byte. MLServer gets the same rows in its V2 protocol, one input per column (`servers.v2_body`), posted to
`/v2/models/hotel-adr/infer`: its MLflow runtime's `/invocations` takes our body too, but that handler
calls the model directly and skips adaptive batching (see `servers.MLSERVER_PATH`).

Every server calls the model with one OpenMP thread, as ours does (`servers.ONE_THREAD`); everything
else (access logs, queues, HTTP servers) is as each framework ships it. Numbers depend on the machine
and on what else runs on it.
"""
