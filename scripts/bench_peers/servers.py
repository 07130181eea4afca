"""The five servers of the peer comparison: how each one starts, what it is sent, what it answers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from scripts import local_stack as stack
from scripts.bench_peers import procfs
from scripts.bench_peers.report import OURS
from scripts.bench_peers.venvs import PEERS_DIR

MLSERVER_TEMPLATES = PEERS_DIR / "mlserver"
START_TIMEOUT_SECONDS = 180  # MLServer and BentoML import a lot before they load the model
# MLServer's V2 endpoint, the one adaptive batching applies to: mlserver.batching.load_batching wraps
# the runtime's predict(), which only /v2/models/<name>/infer calls. mlserver-mlflow's /invocations is a
# custom handler (MLflowRuntime.invocations) that calls the pyfunc model itself, one request at a time.
MLSERVER_PATH = "/v2/models/{model}/infer"
# One OpenMP thread for the model call, as ours runs it (PREDICTOR_INFERENCE_THREADS=1). With
# scikit-learn's default, one thread per core, on 2 shared cores each predict waits for a spinning
# OpenMP thread that lost its core: MLServer measured 14 req/s at batch 1, concurrency 16, against 173
# with one thread, and 1.0 against 74 req/s at batch 100.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


class ServerProcess(stack.Process):
    """A server that takes its helper processes along when it stops (LitServe's outlive a SIGTERM)."""

    def stop(self, timeout: float = 15) -> int:
        members = procfs.family(self.popen.pid)
        code = super().stop(timeout)
        procfs.kill_leftovers(members)
        return code


def start_server(
    name: str, argv: list[str], *, port: int, state_dir: Path, ready_path: str, env: Mapping[str, str]
) -> ServerProcess:
    proc = stack.start_process(
        name,
        argv,
        port=port,
        state_dir=state_dir,
        ready_path=ready_path,
        env=env,
        timeout=START_TIMEOUT_SECONDS,
    )
    return ServerProcess(proc.name, proc.url, proc.popen, proc.log_path)


def records_body(records: list[dict]) -> bytes:
    """Our predictor's body, which `mlflow models serve`, LitServe and BentoML take as it is."""
    return json.dumps({"dataframe_records": records}).encode()


def v2_datatype(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if all(isinstance(v, str) for v in present):
        return "BYTES"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "INT64"
    return "FP64"


def v2_body(records: list[dict]) -> bytes:
    """The same rows as an Open Inference Protocol (V2) request: one input per column, decoded by
    MLServer's pandas codec into the same DataFrame (strings need content_type "str", else they
    arrive as bytes)."""
    inputs = []
    for column in records[0]:
        values = [record[column] for record in records]
        tensor: dict[str, Any] = {
            "name": column,
            "shape": [len(values), 1],
            "datatype": v2_datatype(values),
            "data": values,
        }
        if tensor["datatype"] == "BYTES":
            tensor["parameters"] = {"content_type": "str"}
        inputs.append(tensor)
    return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}).encode()


def predictions_field(answer: Any) -> list[float]:
    return list(answer["predictions"])


def v2_predictions(answer: Any) -> list[float]:
    return list(answer["outputs"][0]["data"])


def bare_list(answer: Any) -> list[float]:
    return list(answer)


@dataclass(frozen=True)
class Server:
    name: str
    path: str
    """Where predictions are posted."""
    start: Callable[[], ServerProcess]
    encode: Callable[[list[dict]], bytes] = records_body
    decode: Callable[[Any], list[float]] = predictions_field


def start_ours(state_dir: Path, tracking_uri: str) -> ServerProcess:
    proc = stack.start_predictor(state_dir, tracking_uri, name="bench-predictor")
    return ServerProcess(proc.name, proc.url, proc.popen, proc.log_path)


def start_mlflow_serve(state_dir: Path, model_dir: Path) -> ServerProcess:
    port = stack.free_port()
    argv = [
        str(stack.VENV_BIN / "mlflow"), "models", "serve", "-m", str(model_dir),
        "--env-manager", "local", "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    # `mlflow models serve --env-manager local` execs `uvicorn` from PATH: the venv's.
    env = {"PATH": f"{stack.VENV_BIN}{os.pathsep}{os.environ['PATH']}", **ONE_THREAD}
    return start_server("mlflow-serve", argv, port=port, state_dir=state_dir, ready_path="/ping", env=env)


def peer_env(bin_dir: Path) -> dict[str, str]:
    """The peer's venv first on PATH, as if activated (a tool that execs another finds the venv's),
    and one OpenMP thread."""
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(bin_dir.parent),
        **ONE_THREAD,
    }


def mlserver_repository(home: Path, model: str, model_dir: Path, ports: Mapping[str, int]) -> Path:
    """MLServer's folder (settings.json, <model>/model-settings.json) from the templates in the repo,
    with this run's ports, the model's name and the champion's folder filled in."""
    settings = json.loads((MLSERVER_TEMPLATES / "settings.json").read_text()) | ports
    model_settings = json.loads((MLSERVER_TEMPLATES / "model-settings.json").read_text())
    model_settings["name"] = model
    model_settings["parameters"]["uri"] = str(model_dir)
    (home / model).mkdir(parents=True, exist_ok=True)
    (home / "settings.json").write_text(json.dumps(settings, indent=2))
    (home / model / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return home


def start_mlserver(state_dir: Path, bin_dir: Path, model_dir: Path, model: str) -> ServerProcess:
    ports = {
        "http_port": stack.free_port(),
        "grpc_port": stack.free_port(),
        "metrics_port": stack.free_port(),
    }
    repository = mlserver_repository(state_dir / "mlserver", model, model_dir, ports)
    argv = [str(bin_dir / "mlserver"), "start", str(repository)]
    return start_server(
        "mlserver",
        argv,
        port=ports["http_port"],
        state_dir=state_dir,
        ready_path=f"/v2/models/{model}/ready",
        env=peer_env(bin_dir),
    )


def start_litserve(state_dir: Path, bin_dir: Path, model_dir: Path) -> ServerProcess:
    port = stack.free_port()
    argv = [
        str(bin_dir / "python"), str(PEERS_DIR / "litserve_server.py"),
        "--model-dir", str(model_dir), "--port", str(port),
    ]  # fmt: skip
    return start_server(
        "litserve", argv, port=port, state_dir=state_dir, ready_path="/health", env=peer_env(bin_dir)
    )


def start_bentoml(state_dir: Path, bin_dir: Path, model_dir: Path) -> ServerProcess:
    port = stack.free_port()
    argv = [
        str(bin_dir / "bentoml"), "serve", "bentoml_service:HotelADR", "--working-dir", str(PEERS_DIR),
        "--host", "127.0.0.1", "--port", str(port), "--arg", f"model_dir={model_dir}",
    ]  # fmt: skip
    # Its model store and config in the run's folder, not ~/bentoml; no usage reports.
    env = {**peer_env(bin_dir), "BENTOML_HOME": str(state_dir / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    return start_server("bentoml", argv, port=port, state_dir=state_dir, ready_path="/readyz", env=env)


def peer_servers(
    state_dir: Path, tracking_uri: str, model: str, model_dir: Path, venvs: Mapping[str, Path]
) -> list[Server]:
    """Ours first (the predictions every peer is checked against), then the peers."""
    return [
        Server(OURS, f"/v1/models/{model}:predict", partial(start_ours, state_dir, tracking_uri)),
        Server(
            "mlserver",
            MLSERVER_PATH.format(model=model),
            partial(start_mlserver, state_dir, venvs["mlserver"], model_dir, model),
            encode=v2_body,
            decode=v2_predictions,
        ),
        Server("litserve", "/predict", partial(start_litserve, state_dir, venvs["litserve"], model_dir)),
        Server(
            "bentoml",
            "/predict",
            partial(start_bentoml, state_dir, venvs["bentoml"], model_dir),
            decode=bare_list,
        ),
        Server("mlflow-serve", "/invocations", partial(start_mlflow_serve, state_dir, model_dir)),
    ]
