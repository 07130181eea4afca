"""predictor: serves the MLflow model a registry alias points to, over the KServe V1 protocol."""

__version__ = "0.1.0"
