"""Helpers for clear "unknown name" errors."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from rlaudit.errors import ConfigError


def unknown_name_error(kind: str, name: object, choices: Iterable[str]) -> ConfigError:
    """A ConfigError for an unknown ``kind`` name, with a "did you mean" hint."""
    choices = list(choices)
    message = f"unknown {kind} {name!r}; expected one of: {', '.join(choices)}"
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    if close:
        message += f". Did you mean {close[0]!r}?"
    return ConfigError(message)
