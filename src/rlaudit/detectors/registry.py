"""The detector registry: ``@detector``, parameters, presets and plug-ins.

A detector is a function ``f(ctx, *, threshold=default, ...)`` that yields
:class:`~rlaudit.detectors.model.Finding` objects. ``@detector`` registers it
under a ``family-symptom`` name with a severity tier and the columns it
needs. Its keyword-only parameters are its thresholds; every one has a
default, and users override them with ``--set name.param=value``.

Its docstring has a one-line summary and the sections ``Finds:``,
``Why it matters:``, ``Evidence:``, ``Not flagged:`` and ``Fix:`` (each a
line of its own, the text below it); registration fails without them.

Third-party packages add detectors through the ``rlaudit.detectors``
entry-point group: each entry point names a module (importing it runs its
``@detector`` decorators) or a decorated function.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import math
import re
import threading
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterable, Iterator, Mapping

from rlaudit.detectors.model import check_severity
from rlaudit.detectors.presets import LEGACY_PREFIX, PRESETS
from rlaudit.errors import ConfigError, did_you_mean

ENTRY_POINT_GROUP = "rlaudit.detectors"
DOC_SECTIONS = ("Finds", "Why it matters", "Evidence", "Not flagged", "Fix")
SCOPES = ("run", "store")
BUILTIN_MODULES = (
    "rlaudit.detectors.baseline",
    "rlaudit.detectors.numeric",
    "rlaudit.detectors.reward",
    "rlaudit.detectors.hacking",
    "rlaudit.detectors.behaviour",
    "rlaudit.detectors.learning",
    "rlaudit.detectors.values",
    "rlaudit.detectors.reproducibility",
    "rlaudit.detectors.legacy",
)

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_HEADER_RE = re.compile(r"^(%s):\s*(.*)$" % "|".join(re.escape(s) for s in DOC_SECTIONS))
_PARAM_TYPES = (bool, int, float, str, tuple, type(None))


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The one-line summary and the fixed sections of a detector docstring."""
    text = inspect.cleandoc(doc or "")
    lines = text.splitlines()
    summary = lines[0].strip() if lines else ""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in lines[1:]:
        m = _HEADER_RE.match(line)
        if m:
            current = m.group(1)
            sections[current] = [m.group(2)] if m.group(2) else []
        elif current is not None:
            sections[current].append(line)
    out = {}
    for name, body in sections.items():
        text = inspect.cleandoc("\n".join(body))
        paragraphs = [" ".join(ln.strip() for ln in para.splitlines()) for para in re.split(r"\n\s*\n", text)]
        out[name] = "\n\n".join(p for p in paragraphs if p)
    return summary, out


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector."""

    name: str
    severity: str
    needs: tuple[str, ...]
    scope: str
    func: Callable[..., Iterable[Any]] = field(repr=False, compare=False)
    params: Mapping[str, Any]
    summary: str
    sections: Mapping[str, str]
    origin: str = "builtin"

    @property
    def family(self) -> str:
        return self.name.split("-", 1)[0]

    @property
    def fix(self) -> str:
        return self.sections.get("Fix", "")

    def resolve_params(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated with ``overrides`` (already typed, or strings to parse)."""
        values = dict(self.params)
        for key, raw in (overrides or {}).items():
            if key not in self.params:
                raise ConfigError(
                    f"detector {self.name!r} has no parameter {key!r}"
                    + did_you_mean(key, self.params)
                    + f"; its parameters are {', '.join(sorted(self.params)) or '(none)'}"
                )
            values[key] = coerce_param(self.name, key, self.params[key], raw)
        return values


def coerce_param(detector: str, key: str, default: Any, raw: Any) -> Any:
    """``raw`` converted to the type of ``default``; ConfigError when it does not fit."""
    where = f"--set {detector}.{key}={raw}"
    if not isinstance(raw, str):
        value = raw
    elif isinstance(default, bool):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            value = True
        elif low in ("0", "false", "no", "off"):
            value = False
        else:
            raise ConfigError(f"{where}: expected true or false")
    elif isinstance(default, int):
        try:
            value = int(raw)
        except ValueError:
            try:
                f = float(raw)
            except ValueError:
                f = math.nan
            if not (math.isfinite(f) and f == int(f)):
                raise ConfigError(f"{where}: expected an integer like {default}") from None
            value = int(f)
    elif isinstance(default, float):
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{where}: expected a number like {default}") from None
        if math.isnan(value):
            raise ConfigError(f"{where}: expected a number, not NaN")
    elif isinstance(default, tuple):
        items = [s.strip() for s in raw.split(",") if s.strip()]
        kind = type(default[0]) if default else str
        value = tuple(coerce_param(detector, key, kind(), item) if kind is not str else item for item in items)
    elif default is None:
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
    else:
        value = raw
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number like {default}")
        if isinstance(default, float):
            value = float(value)
    return value


def parse_set(options: Iterable[str]) -> dict[str, dict[str, str]]:
    """``["reward-spike.z=8", ...]`` -> ``{"reward-spike": {"z": "8"}}`` (values still strings)."""
    out: dict[str, dict[str, str]] = {}
    for opt in options:
        name_key, sep, value = opt.partition("=")
        name, dot, key = name_key.strip().rpartition(".")
        if not sep or not dot or not name or not key or value.strip() == "":
            raise ConfigError(f"--set {opt!r}: expected DETECTOR.PARAM=VALUE, e.g. --set reward-spike.z=8")
        out.setdefault(name, {})[key.strip()] = value.strip()
    return out


class Registry:
    """Detectors by name, presets, and plug-in load problems."""

    def __init__(self) -> None:
        self._specs: dict[str, DetectorSpec] = {}
        self.load_problems: list[tuple[str, str]] = []
        self._origin = "builtin"
        self._loaded = False
        self._lock = threading.RLock()

    # -- registration ------------------------------------------------------

    def register(self, func: Callable, *, name: str, severity: str, needs: Iterable[str] = (),
                 scope: str = "run") -> DetectorSpec:
        if not _NAME_RE.match(name or ""):
            raise ConfigError(f"detector name {name!r} must be lower-case words joined by '-', like 'reward-spike'")
        check_severity(severity)
        if scope not in SCOPES:
            raise ConfigError(f"detector {name!r}: scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if isinstance(needs, str):
            needs = (needs,)
        summary, sections = parse_docstring(func.__doc__)
        missing = [s for s in DOC_SECTIONS if not sections.get(s)]
        if not summary or missing:
            raise ConfigError(
                f"detector {name!r}: docstring needs a one-line summary and the sections "
                f"{', '.join(DOC_SECTIONS)}; missing {', '.join(missing) or 'the summary'}"
            )
        params = _keyword_params(name, func)
        spec = DetectorSpec(
            name=name, severity=severity, needs=tuple(needs), scope=scope, func=func,
            params=params, summary=summary, sections=sections, origin=self._origin,
        )
        with self._lock:
            old = self._specs.get(name)
            if old is not None and (old.func.__module__, old.func.__qualname__) != (func.__module__, func.__qualname__):
                raise ConfigError(f"detector name {name!r} is already registered by {old.func.__module__}")
            self._specs[name] = spec
        return spec

    def unregister(self, name: str) -> None:
        with self._lock:
            self._specs.pop(name, None)

    @contextlib.contextmanager
    def _loading(self, origin: str) -> Iterator[None]:
        previous, self._origin = self._origin, origin
        try:
            yield
        finally:
            self._origin = previous

    def load(self) -> "Registry":
        """Import the built-in detectors and the ``rlaudit.detectors`` entry points (once)."""
        with self._lock:
            if self._loaded:
                return self
            self._loaded = True
            for module in BUILTIN_MODULES:
                importlib.import_module(module)
            self.load_entry_points()
        return self

    def load_entry_points(self) -> None:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            origin = f"entry point {ep.name} ({ep.value})"
            try:
                with self._loading(origin):
                    obj = ep.load()
                    spec = getattr(obj, "__rlaudit_detector__", None)
                    if spec is not None and spec.name not in self._specs:
                        self._specs[spec.name] = spec
            except Exception as exc:  # a broken plug-in must not break the audit
                self.load_problems.append((origin, f"{type(exc).__name__}: {exc}"))

    # -- lookup --------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[DetectorSpec]:
        return [self._specs[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def get(self, name: str) -> DetectorSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise ConfigError(
                f"unknown detector {name!r}" + did_you_mean(name, self._specs)
                + "; run 'rlaudit detectors' to list them"
            ) from None

    def preset(self, name: str) -> list[str]:
        if name not in PRESETS:
            raise ConfigError(
                f"unknown preset {name!r}" + did_you_mean(name, PRESETS)
                + f"; presets are {', '.join(sorted(PRESETS))}"
            )
        members = PRESETS[name]
        if members is None:
            return [n for n in self.names() if not is_legacy(n)]
        for m in members:
            if m not in self._specs:
                raise ConfigError(f"preset {name!r} lists detector {m!r}, which is not registered")
        return list(members)

    def select(self, presets: Iterable[str] = (), detectors: Iterable[str] = ()) -> list[DetectorSpec]:
        """Detectors named by ``presets`` and ``detectors`` (default: preset ``all``), in name order."""
        presets, detectors = list(presets), list(detectors)
        if not presets and not detectors:
            presets = ["all"]
        chosen: set[str] = set()
        for p in presets:
            chosen.update(self.preset(p))
        for d in detectors:
            chosen.add(self.get(d).name)
        return [self._specs[n] for n in sorted(chosen)]

    def resolve_params(self, specs: Iterable[DetectorSpec], overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Per-detector parameters for ``specs`` with ``--set`` overrides applied.

        An override naming a detector that is unknown, or registered but not
        selected, is an error (it would otherwise be silently ignored).
        """
        specs = list(specs)
        selected = {s.name for s in specs}
        for name in overrides:
            if name not in selected:
                self.get(name)  # unknown: did-you-mean error
                raise ConfigError(f"--set {name}.…: detector {name!r} is not selected in this audit")
        return {s.name: s.resolve_params(overrides.get(s.name)) for s in specs}


def _keyword_params(name: str, func: Callable) -> dict[str, Any]:
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if not params or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise ConfigError(f"detector {name!r}: the first parameter must be the context (ctx)")
    out = {}
    for p in params[1:]:
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise ConfigError(f"detector {name!r}: thresholds must be keyword-only (put them after '*'), {p.name!r} is not")
        if p.default is inspect.Parameter.empty:
            raise ConfigError(f"detector {name!r}: parameter {p.name!r} needs a default")
        if not isinstance(p.default, _PARAM_TYPES):
            raise ConfigError(f"detector {name!r}: parameter {p.name!r} default must be a bool, int, float, str, tuple or None")
        out[p.name] = p.default
    return out


def is_legacy(name: str) -> bool:
    """True for the predecessors' reproduced rules (``legacy-*``), which ``all`` leaves out."""
    return name.startswith(LEGACY_PREFIX)


#: The process-wide registry the CLI and ``rlaudit.detectors`` use.
REGISTRY = Registry()


def detector(name: str, *, severity: str, needs: Iterable[str] = (), scope: str = "run",
             registry: Registry | None = None) -> Callable[[Callable], Callable]:
    """Register a detector function.

    ``needs`` lists step columns (``"entropy"``), struct fields
    (``"info.true_reward"``), ``"metrics"`` or ``"metrics:<name>"``,
    ``"manifest:<key>"``, and ``"episodes"`` (the audit then materialises
    the episodes view once). A run lacking one is *skipped* with the reason.
    ``scope="store"`` runs the detector once over all runs instead of once per run.
    """

    def wrap(func: Callable) -> Callable:
        spec = (registry or REGISTRY).register(func, name=name, severity=severity, needs=needs, scope=scope)
        func.__rlaudit_detector__ = spec
        return func

    return wrap


def get_registry() -> Registry:
    """The process-wide registry with built-ins and plug-ins loaded."""
    return REGISTRY.load()
