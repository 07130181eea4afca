"""predictor: serves the MLflow model a registry alias points to, over the KServe V1 protocol."""

from importlib.metadata import PackageNotFoundError, version

try:
    # pyproject.toml's version, which tests/test_version.py holds to the chart's appVersion.
    __version__ = version("mlops-predictor")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
