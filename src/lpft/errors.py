"""User-facing errors: each becomes one line on stderr and exit code 2 in the CLI."""

from __future__ import annotations


class LpftError(Exception):
    """A mistake in the user's input (name, file, value); the message names it."""


class ConfigError(LpftError):
    """A configuration key or value that is unknown or out of range."""


class DataError(LpftError):
    """A dataset on disk that does not have the expected layout or content."""


class CheckpointError(LpftError):
    """A checkpoint that cannot be read or does not fit the model."""


class RunLockedError(LpftError):
    """Another process is writing to the same run directory."""


class TrainingDivergedError(RuntimeError):
    """A non-finite loss; the cell that raised it is recorded as failed."""
