"""Errors that end a run: the CLI reports each as one clear line and exits non-zero, never a traceback."""


class DriftMonitorError(Exception):
    """A run could not complete; the message says what to check."""


class ConfigurationError(DriftMonitorError):
    """A setting is missing or invalid."""


class NoTargets(DriftMonitorError):
    """None of the predictor pods answered."""


class MlflowUnavailable(DriftMonitorError):
    """The MLflow server did not answer in time."""


class ReferenceNotFound(DriftMonitorError):
    """A served model version has no reference artifacts to compare its samples with."""


class PushFailed(DriftMonitorError):
    """The Pushgateway rejected or did not answer the push."""


class LedgerUnavailable(DriftMonitorError):
    """The predictions ledger could not be read (unreachable, wrong credentials, no tables yet)."""
