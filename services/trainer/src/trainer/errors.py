"""Errors the CLI reports as one clear line and a non-zero exit, never a traceback."""


class TrainerError(Exception):
    """A problem with the input or the environment that the user can fix."""


class DataError(TrainerError):
    """The dataset cannot be trained on (missing target, too few rows, unreadable file...)."""


class MlflowUnavailable(TrainerError):
    """The MLflow server did not answer in time."""
