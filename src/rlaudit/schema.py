"""The one declaration of rlaudit's on-disk format.

A finished run is ``<store>/<run_id>.parquet`` (one row per environment step)
with the run manifest as JSON in the file's key-value metadata, plus
``<store>/<run_id>.metrics.parquet`` (per-update training metrics, long
format). While a run is in progress its data lives in
``<store>/<run_id>.parquet.parts/``: closed Parquet segments and a
``manifest.json``. The writer (``rlaudit.recorder``) and the analyser
(``rlaudit.analyzer``) both take names, types and keys from here;
docs/schema.md documents them for users.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 1
FORMAT_NAME = "rlaudit-trajectory"

# Key-value metadata keys of every file rlaudit writes.
MANIFEST_KEY = b"rlaudit.manifest"
SCHEMA_VERSION_KEY = b"rlaudit.schema_version"
FILE_KIND_KEY = b"rlaudit.kind"  # b"steps" or b"metrics"

# File layout.
STEPS_SUFFIX = ".parquet"
METRICS_SUFFIX = ".metrics.parquet"
PARTS_SUFFIX = ".parquet.parts"
PARTS_MANIFEST = "manifest.json"
STEP_SEGMENT = "part-{:06d}.parquet"
METRICS_SEGMENT = "metrics-{:06d}.parquet"
STEP_SEGMENT_GLOB = "part-*.parquet"
METRICS_SEGMENT_GLOB = "metrics-*.parquet"

# Run status as stored in the manifest. "crashed" is never stored: readers
# derive it for an in-progress run whose recording process is gone.
STATUS_COMPLETE = "complete"
STATUS_RECOVERED = "recovered"
STATUS_IN_PROGRESS = "in_progress"
STATUS_CRASHED = "crashed"

PHASES = ("train", "eval")

# ---------------------------------------------------------------------------
# Step table
# ---------------------------------------------------------------------------

#: Columns every step file has, with fixed types.
CORE_STEP_FIELDS: tuple[pa.Field, ...] = (
    pa.field("run_id", pa.dictionary(pa.int32(), pa.string()), nullable=False),
    pa.field("env_index", pa.int32(), nullable=False),
    pa.field("episode", pa.int64(), nullable=False),
    pa.field("t", pa.int32(), nullable=False),
    pa.field("global_step", pa.int64(), nullable=False),
    pa.field("phase", pa.dictionary(pa.int8(), pa.string()), nullable=False),
    pa.field("wall_time", pa.float64(), nullable=False),
    # obs / action: type depends on the spaces, see arrow_type()
    pa.field("reward", pa.float64(), nullable=False),
    pa.field("terminated", pa.bool_(), nullable=False),
    pa.field("truncated", pa.bool_(), nullable=False),
    # final_obs: as obs, null except on an episode's last step
    pa.field("reset_seed", pa.int64(), nullable=True),
)

#: Optional per-step policy columns (present only if the run supplied them).
POLICY_SCALAR_FIELDS: tuple[pa.Field, ...] = (
    pa.field("logp", pa.float32(), nullable=True),
    pa.field("entropy", pa.float32(), nullable=True),
    pa.field("value", pa.float32(), nullable=True),
    pa.field("policy_version", pa.int32(), nullable=True),
)
#: Column order in every step file.
STEP_COLUMN_ORDER = (
    "run_id", "env_index", "episode", "t", "global_step", "phase", "wall_time",
    "obs", "action", "reward", "terminated", "truncated", "final_obs", "reset_seed",
    "reward_terms", "info", "logp", "entropy", "value", "q", "policy_version",
)

#: Columns the analyser can rely on in every rlaudit step file.
REQUIRED_STEP_COLUMNS = (
    "run_id", "env_index", "episode", "t", "global_step", "phase", "wall_time",
    "reward", "terminated", "truncated",
)

# Column encodings (recorder.writer.write_options): dictionary only on strings
# and images (on floats it doubles write cost and grows files); delta for the
# counters below; byte-stream-split for floats.
DELTA_COLUMNS = ("env_index", "episode", "t", "global_step")
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3

# ---------------------------------------------------------------------------
# Metrics table (long format)
# ---------------------------------------------------------------------------

METRICS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("global_step", pa.int64(), nullable=False),
        pa.field("wall_time", pa.float64(), nullable=False),
        pa.field("name", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("value", pa.float64(), nullable=True),
    ]
)

# ---------------------------------------------------------------------------
# Spaces -> JSON specs -> Arrow types
# ---------------------------------------------------------------------------
#
# A spec is a small JSON-able dict describing one observation/action space:
#   {"type": "Box", "shape": [4], "dtype": "float32", "low": ..., "high": ...}
#   {"type": "Discrete", "n": 2, "start": 0}
#   {"type": "MultiDiscrete", "nvec": [3, 3]}
#   {"type": "MultiBinary", "n": [5]}
#   {"type": "Dict", "spaces": {"pos": spec, ...}}
#   {"type": "Tuple", "spaces": [spec, ...]}
# Specs inferred from data (no space given) have no bounds.  A uint8 Box with
# two or more dimensions is an image and is stored as fixed-size binary.

_MAX_BOUND_VALUES = 64


def _bounds(arr: np.ndarray) -> Any:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.size == 0:
        return []
    if np.all(arr == arr.flat[0]):
        return _json_float(arr.flat[0])
    if arr.size <= _MAX_BOUND_VALUES:
        return [_json_float(x) for x in arr.ravel()]
    return {"min": _json_float(arr.min()), "max": _json_float(arr.max())}


def _json_float(x: float) -> float | str | None:
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def space_spec(space: Any) -> dict[str, Any] | None:
    """JSON description of a Gymnasium space; None for unsupported spaces."""
    from gymnasium import spaces as S

    if isinstance(space, S.Box):
        return {
            "type": "Box",
            "shape": [int(d) for d in space.shape],
            "dtype": str(space.dtype),
            "low": _bounds(space.low),
            "high": _bounds(space.high),
        }
    if isinstance(space, S.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, S.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).astype(int).tolist()}
    if isinstance(space, S.MultiBinary):
        return {"type": "MultiBinary", "n": [int(d) for d in np.atleast_1d(space.n)]}
    if isinstance(space, S.Dict):
        children = {k: space_spec(v) for k, v in space.spaces.items()}
        if any(c is None for c in children.values()):
            return None
        return {"type": "Dict", "spaces": children}
    if isinstance(space, S.Tuple):
        children = [space_spec(v) for v in space.spaces]
        if any(c is None for c in children):
            return None
        return {"type": "Tuple", "spaces": children}
    return None


def infer_spec(value: Any) -> dict[str, Any] | None:
    """Spec of an observation or action seen without a declared space."""
    if isinstance(value, (bool, np.bool_)):
        return {"type": "Box", "shape": [1], "dtype": "float32"}
    if isinstance(value, (int, np.integer)):
        return {"type": "Discrete", "n": None, "start": 0}
    if isinstance(value, (float, np.floating)):
        return {"type": "Box", "shape": [1], "dtype": "float32"}
    if isinstance(value, dict):
        children = {str(k): infer_spec(v) for k, v in value.items()}
        if any(c is None for c in children.values()):
            return None
        return {"type": "Dict", "spaces": children}
    if isinstance(value, tuple):
        children = [infer_spec(v) for v in value]
        if any(c is None for c in children):
            return None
        return {"type": "Tuple", "spaces": children}
    try:
        arr = np.asarray(value)
    except Exception:
        return None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        return None
    shape = [int(d) for d in arr.shape] or [1]
    dtype = "uint8" if arr.dtype == np.uint8 else ("float32" if arr.dtype.kind == "f" else "int64")
    return {"type": "Box", "shape": shape, "dtype": dtype}


def is_image(spec: dict[str, Any]) -> bool:
    return spec["type"] == "Box" and spec.get("dtype") == "uint8" and len(spec["shape"]) >= 2


def flat_size(spec: dict[str, Any]) -> int:
    if spec["type"] == "Box":
        return int(np.prod(spec["shape"])) if spec["shape"] else 1
    if spec["type"] == "MultiDiscrete":
        return int(np.prod(np.shape(spec["nvec"])))
    if spec["type"] == "MultiBinary":
        return int(np.prod(spec["n"]))
    return 1


def arrow_type(spec: dict[str, Any]) -> pa.DataType:
    """Arrow type of a column holding values of ``spec``."""
    kind = spec["type"]
    if kind == "Discrete":
        return pa.int64()
    if kind == "Box":
        if is_image(spec):
            return pa.binary(flat_size(spec))
        inner = pa.float32() if np.dtype(spec["dtype"]).kind == "f" else pa.int64()
        return pa.list_(inner, flat_size(spec))
    if kind == "MultiDiscrete":
        return pa.list_(pa.int64(), flat_size(spec))
    if kind == "MultiBinary":
        return pa.list_(pa.int8(), flat_size(spec))
    if kind == "Dict":
        return pa.struct([pa.field(k, arrow_type(v)) for k, v in spec["spaces"].items()])
    if kind == "Tuple":
        return pa.struct([pa.field(str(i), arrow_type(v)) for i, v in enumerate(spec["spaces"])])
    raise ValueError(f"unsupported space spec {spec!r}")


# ---------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------

#: Keys of the run manifest (documented in docs/schema.md).
MANIFEST_KEYS = (
    "format", "schema_version", "run_id", "status", "created_at", "ended_at",
    "duration_s", "env", "spaces", "num_envs", "seed", "agent", "hyperparameters",
    "gamma", "reward", "auditor_columns", "config", "counts", "dropped",
    "recorder", "versions", "host", "git_commit", "error",
)
#: Declarations the recorder lifts from ``config`` into the manifest when given: read by
#: detectors (``auditor_goals``, ``reward_task_terms``) and written by importers
#: (``source``: where the data came from; ``episode_level``: one row per episode).
OPTIONAL_CONFIG_KEYS = ("auditor_goals", "reward_task_terms", "source", "episode_level")
#: Keys only some manifests have: after ``recover``, in a parts folder, and declarations from ``config``.
OPTIONAL_MANIFEST_KEYS = ("unreadable_segments", "pid", "updated_at", *OPTIONAL_CONFIG_KEYS)


def manifest_to_metadata(manifest: dict[str, Any], kind: str = "steps") -> dict[bytes, bytes]:
    return {
        MANIFEST_KEY: json.dumps(manifest, sort_keys=True, default=_json_default).encode(),
        SCHEMA_VERSION_KEY: str(manifest.get("schema_version", SCHEMA_VERSION)).encode(),
        FILE_KIND_KEY: kind.encode(),
    }


def manifest_from_metadata(metadata: dict[bytes, bytes] | None) -> dict[str, Any] | None:
    """The manifest stored in a file's key-value metadata, or None."""
    if not metadata or MANIFEST_KEY not in metadata:
        return None
    return json.loads(metadata[MANIFEST_KEY])


def dumps_manifest(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, sort_keys=True, indent=1, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return repr(obj)
