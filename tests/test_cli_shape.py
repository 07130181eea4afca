"""The three CLIs share one shape: an invalid setting is one line naming its variable and exit 2, the log
settings come from the shared LOG_LEVEL/LOG_FORMAT, and the trainer and the drift monitor wait for MLflow
with the same code.

In-process (`main([...])` with the environment set): fast, and the same checks for every service.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from drift_monitor.__main__ import main as drift_monitor_main
from drift_monitor.config import Settings as DriftMonitorSettings
from predictor.__main__ import main as predictor_main
from predictor.config import Settings as PredictorSettings
from trainer.__main__ import main as trainer_main
from trainer.config import Settings as TrainerSettings

# prog, main, argv, an invalid setting of its own (variable, value)
CLIS = [
    ("trainer", trainer_main, ["train"], ("TRAINER_CANDIDATES", "xgboost")),
    ("predictor", predictor_main, [], ("PREDICTOR_PORT", "0")),
    (
        "drift-monitor",
        drift_monitor_main,
        ["--targets", "http://127.0.0.1:1"],
        ("DRIFT_MONITOR_CORRECTION", "holm"),
    ),
]
SETTINGS = [TrainerSettings, PredictorSettings, DriftMonitorSettings]
Main = Callable[[list[str]], int]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOG_LEVEL", "LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")  # the drift monitor requires one


def settings_error(capsys: pytest.CaptureFixture[str], main: Main, argv: list[str]) -> str:
    """Runs the CLI, checks the shape (exit 2, nothing on stdout, one line on stderr), returns the line."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    [line] = err.splitlines()
    return line


@pytest.mark.parametrize(("prog", "main", "argv", "invalid"), CLIS, ids=[c[0] for c in CLIS])
def test_invalid_setting_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    prog: str,
    main: Main,
    argv: list[str],
    invalid: tuple[str, str],
) -> None:
    variable, value = invalid
    monkeypatch.setenv(variable, value)
    assert settings_error(capsys, main, argv).startswith(f"{prog}: invalid settings: {variable}: ")


@pytest.mark.parametrize(("prog", "main", "argv", "invalid"), CLIS, ids=[c[0] for c in CLIS])
def test_bad_log_level_exits_2_naming_log_level(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    prog: str,
    main: Main,
    argv: list[str],
    invalid: tuple[str, str],
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "loud")
    assert settings_error(capsys, main, argv) == (
        f"{prog}: invalid settings: LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"
    )


@pytest.mark.parametrize("settings", SETTINGS, ids=["trainer", "predictor", "drift-monitor"])
def test_log_settings_come_from_the_shared_variables(
    monkeypatch: pytest.MonkeyPatch,
    settings: type[TrainerSettings | PredictorSettings | DriftMonitorSettings],
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("LOG_FORMAT", "text")
    assert (settings().log_level, settings().log_format) == ("DEBUG", "text")
    monkeypatch.setenv("LOG_FORMAT", "")  # a chart renders an unset value as ""
    monkeypatch.delenv("LOG_LEVEL")
    assert (settings().log_level, settings().log_format) == ("INFO", None)


SERVICES = Path(__file__).resolve().parent.parent / "services"
CONFIGS = ["trainer/src/trainer", "predictor/src/predictor", "drift-monitor/src/drift_monitor"]


def shared_settings_code(package: str) -> str:
    """The part of config.py every service holds a copy of: the log level type and the error line."""
    text = (SERVICES / package / "config.py").read_text()
    return (
        text[text.index("LogLevel = ") : text.index("class Settings")]
        + text[text.index("def describe_settings_error") :]
    )


def test_the_three_services_share_the_same_settings_error_code() -> None:
    trainer, *others = (shared_settings_code(package) for package in CONFIGS)
    assert others == [trainer, trainer]


def test_trainer_and_drift_monitor_wait_for_mlflow_with_the_same_code() -> None:
    """Separate images, so two copies of mlflow_health.py: they differ only in the package name."""
    trainer = (SERVICES / "trainer/src/trainer/mlflow_health.py").read_text()
    drift_monitor = (SERVICES / "drift-monitor/src/drift_monitor/mlflow_health.py").read_text()
    assert trainer.replace("from trainer.", "from drift_monitor.") == drift_monitor
