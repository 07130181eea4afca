"""The closed loop's checkpoints, shared by `make demo` and the e2e test: what the retrain controller did,
what the gate decided, which version the predictors serve, and a version's error on given rows.

Everything is read from the real parts: the controller's /v1/state, the model registry's tags, the
predictors' /readyz. Nothing here decides anything; the controller and the trainer do.
"""

from __future__ import annotations

from typing import Any

import httpx

from scripts.labels import MODEL
from scripts.local_stack import Loop, wait_for


def controller_state(loop: Loop) -> dict[str, Any]:
    """The controller's guard-rail state (GET /v1/state, with the webhook token)."""
    assert loop.controller and loop.controller_token, "the loop runs without the retrain controller"
    response = httpx.get(
        f"{loop.controller.url}/v1/state",
        headers={"Authorization": f"Bearer {loop.controller_token}"},
        timeout=5,
    )
    response.raise_for_status()
    state: dict[str, Any] = response.json()
    return state


def wait_for_run_started(loop: Loop, *, runs_before: int, timeout: float) -> dict[str, Any]:
    """Until the controller has started one more run than `runs_before`; its state then."""
    return wait_for(
        lambda: (s := controller_state(loop)) and len(s["runs"]) > runs_before and s,
        timeout,
        interval=1,
        what="a retraining run started by the controller",
    )


def wait_for_run_finished(loop: Loop, *, timeout: float) -> dict[str, Any]:
    """Until no run is in progress; the state, whose `last_outcome` says how the run ended."""
    return wait_for(
        lambda: (s := controller_state(loop)) and s["running"] is None and s,
        timeout,
        interval=2,
        what="the retraining run to finish",
    )


def served_versions(loop: Loop) -> set[str]:
    """The model version each predictor has loaded (its /readyz)."""
    return {httpx.get(f"{url}/readyz", timeout=5).json()["model_version"] for url in loop.predictor_urls}


def wait_for_served(loop: Loop, version: str, *, timeout: float) -> None:
    """Until every predictor serves `version` (they follow the champion alias by polling)."""
    wait_for(
        lambda: served_versions(loop) == {version},
        timeout,
        interval=1,
        what=f"every predictor serving v{version}",
    )


def version_tags(tracking_uri: str, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return dict(MlflowClient(tracking_uri).get_model_version(MODEL, version).tags)


def champion_version(tracking_uri: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient(tracking_uri).get_model_version_by_alias(MODEL, "champion").version)


def gate_line(tags: dict[str, str]) -> str:
    """One line with the gate's numbers, from the new version's tags."""
    promoted = "promoted" if tags.get("promoted") == "true" else "not promoted"
    if tags.get("gate") != "paired-recent-labels":
        return f"gate ({tags.get('gate', 'test-window')}): {promoted} — {tags.get('rejected_reason', '')}".rstrip(
            " —"
        )

    def num(key: str) -> float:
        return float(tags[key])

    return (
        f"gate on the {tags['gate_rows']} most recent labelled rows (paired): "
        f"champion MAE {num('gate_champion_mae'):.2f}, challenger MAE {num('gate_challenger_mae'):.2f}, "
        f"difference {num('gate_mae_diff'):+.2f} (95% interval {num('gate_mae_diff_low'):+.2f} to "
        f"{num('gate_mae_diff_high'):+.2f}) → {promoted}"
    )


def version_mae(tracking_uri: str, version: str, mode: str) -> float:
    """A registered version's MAE on every row of a traffic window (scripts/traffic.py), loaded from the
    registry: how a version that no longer serves would have done on the same rows."""
    import mlflow
    import numpy as np

    from scripts.traffic import hotel_windows

    w = hotel_windows()
    frame = w.frame(mode)
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    predictions = np.asarray(model.predict(frame.drop(columns=[w.target])), dtype=float)
    return float(np.mean(np.abs(predictions - frame[w.target].to_numpy(dtype=float))))
