"""Errors and warnings raised by rlaudit.

Every message says what was expected, what was found, and what to do. The CLI
turns any :class:`RlauditError` into a one-line message and a non-zero exit.
"""

from __future__ import annotations

import difflib
from typing import Iterable


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


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """`` (did you mean 'x'?)`` naming the choice closest to ``name``, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(kind: str, name: object, choices: Iterable[object]) -> ConfigError:
    """The error for an unknown ``kind`` name: the name, a suggestion, the valid names."""
    choices = [str(c) for c in choices]
    return ConfigError(f"unknown {kind} {name!r}{did_you_mean(name, choices)}; expected one of: {', '.join(choices)}")


class ReplayError(RlauditError):
    """A recorded episode cannot be re-simulated (no seed, no env, or the env does not reproduce it)."""
