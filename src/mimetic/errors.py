"""Errors a user can act on.

Each one carries a message that names the fix (a config key, a path, a command).
The entry point prints such a message without a traceback; anything else is a bug
and keeps its traceback.
"""


class MimeticError(Exception):
    """Base class for errors caused by input the user controls."""


class ConfigError(MimeticError, ValueError):
    """A config value is unknown, of the wrong type or impossible."""


class DatasetError(MimeticError):
    """A dataset is missing, incomplete or malformed."""


class CheckpointError(MimeticError):
    """A checkpoint cannot be read or does not belong to this run."""


class TrainingError(MimeticError):
    """Training cannot go on (e.g. the loss became NaN)."""


class RunDirError(MimeticError):
    """A run directory holds a file that cannot be read, or cannot be written to."""
