"""Errors and warnings raised by rlaudit.

Every message says what was expected, what was found, and what to do. The CLI
turns any :class:`RlauditError` into a one-line message and a non-zero exit.
"""

from __future__ import annotations


class RlauditError(Exception):
    """Base class of every error rlaudit raises on bad input or bad use."""


class StoreError(RlauditError):
    """A trajectory store, file or run could not be read or written."""


class RunExistsError(StoreError):
    """A run id already exists in the store; runs are never overwritten."""


class SchemaError(StoreError):
    """A file does not follow the rlaudit schema (foreign, corrupt or newer)."""


class ConfigError(RlauditError):
    """An option, parameter or name given by the user is invalid."""


class RecorderWarning(UserWarning):
    """Data the recorder could not store; it is counted in the run manifest."""
