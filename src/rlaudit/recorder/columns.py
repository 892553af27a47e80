"""Preallocated numpy buffers for space-typed columns (obs, action, final_obs, q).

One buffer class per storage kind; ``make_column(spec, capacity)`` picks it
from a space spec (``rlaudit.schema``).  ``to_arrow(n)`` is zero-copy where
Arrow allows it.  Rows that could not be stored are nulls, never garbage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from rlaudit import schema
from rlaudit.recorder.writer import text_of


class _Column:
    """Common null bookkeeping: rows whose value could not be stored."""

    def __init__(self, spec: dict[str, Any], capacity: int):
        self.spec = spec
        self.capacity = capacity
        self.type = schema.arrow_type(spec)
        self.null_rows: list[int] = []

    def set_null(self, i: int) -> None:
        self.null_rows.append(i)

    def _mask(self, n: int) -> np.ndarray | None:
        """Boolean mask of the null rows among the first ``n``, or None."""
        rows = [r for r in self.null_rows if r < n]
        if not rows:
            return None
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        return mask

    def reset_nulls(self) -> None:
        self.null_rows = []


class ArrayColumn(_Column):
    """Discrete (int64 scalar), Box / MultiDiscrete / MultiBinary (fixed-size list)."""

    def __init__(self, spec: dict[str, Any], capacity: int):
        super().__init__(spec, capacity)
        kind = spec["type"]
        if kind == "Discrete":
            self.shape: tuple[int, ...] = ()
            dtype = np.int64
        elif kind == "Box":
            self.shape = tuple(spec["shape"]) or (1,)
            dtype = np.float32 if np.dtype(spec["dtype"]).kind == "f" else np.int64
        elif kind == "MultiDiscrete":
            self.shape = tuple(np.shape(spec["nvec"]))
            dtype = np.int64
        else:  # MultiBinary
            self.shape = tuple(spec["n"])
            dtype = np.int8
        self.size = int(np.prod(self.shape)) if self.shape else 1
        self.data = np.zeros((capacity,) + self.shape, dtype=dtype)

    def set(self, i: int, value: Any) -> None:
        self.data[i] = value

    def set_rows(self, i: int, values: Any, index: np.ndarray | slice) -> None:
        """Rows ``i, i+1, ...`` from ``values[index]`` (a batch over sub-envs)."""
        v = np.asarray(values)[index]
        self.data[i : i + len(v)] = v.reshape((len(v),) + self.shape)

    def put_rows(self, rows: np.ndarray | slice, values: Any, offset: int = 0) -> None:
        """Rows ``offset + rows`` from ``values[rows]`` (staging one row per sub-env)."""
        v = np.asarray(values)[rows]
        self.data[shift(rows, offset)] = v.reshape((len(v),) + self.shape)

    def gather(self, i: int, src: "ArrayColumn", rows: np.ndarray | slice) -> None:
        v = src.data[rows]
        self.data[i : i + len(v)] = v

    def copy_row(self, dst: int, src: "ArrayColumn", src_row: int) -> None:
        self.data[dst] = src.data[src_row]

    def to_arrow(self, n: int) -> pa.Array:
        mask = self._mask(n)
        if not self.shape:
            return pa.array(np.ascontiguousarray(self.data[:n]), type=self.type, mask=mask)
        flat = pa.array(self.data[:n].reshape(-1))
        return pa.FixedSizeListArray.from_arrays(
            flat, self.size, mask=None if mask is None else pa.array(mask)
        )


class ImageColumn(ArrayColumn):
    """uint8 images as fixed-size binary (raw bytes; the shape is in the manifest)."""

    def __init__(self, spec: dict[str, Any], capacity: int):
        _Column.__init__(self, spec, capacity)
        self.image_shape = tuple(spec["shape"])
        self.size = int(np.prod(self.image_shape))
        self.shape = (self.size,)
        self.data = np.zeros((capacity, self.size), dtype=np.uint8)

    def set(self, i: int, value: Any) -> None:
        arr = np.asarray(value, dtype=np.uint8)
        if arr.size != self.size:
            raise ValueError(f"image of shape {arr.shape}, expected {self.image_shape}")
        self.data[i] = arr.reshape(-1)

    def to_arrow(self, n: int) -> pa.Array:
        mask = self._mask(n)
        validity = None if mask is None else pa.array(~mask).buffers()[1]
        buf = pa.py_buffer(np.ascontiguousarray(self.data[:n]))
        null_count = 0 if mask is None else int(mask.sum())
        return pa.FixedSizeBinaryArray.from_buffers(self.type, n, [validity, buf], null_count)


class StructColumn(_Column):
    """Dict and Tuple spaces: one child column per key."""

    def __init__(self, spec: dict[str, Any], capacity: int):
        super().__init__(spec, capacity)
        if spec["type"] == "Dict":
            self.keys: list[Any] = list(spec["spaces"])
            specs = list(spec["spaces"].values())
        else:
            self.keys = list(range(len(spec["spaces"])))
            specs = spec["spaces"]
        self.names = [str(k) for k in self.keys]
        self.children = [make_column(s, capacity) for s in specs]

    def set(self, i: int, value: Any) -> None:
        for key, child in zip(self.keys, self.children):
            child.set(i, value[key])

    def set_rows(self, i: int, values: Any, index: np.ndarray) -> None:
        for key, child in zip(self.keys, self.children):
            child.set_rows(i, values[key], index)

    def put_rows(self, rows: np.ndarray, values: Any, offset: int = 0) -> None:
        for key, child in zip(self.keys, self.children):
            child.put_rows(rows, values[key], offset)

    def gather(self, i: int, src: "StructColumn", rows: np.ndarray) -> None:
        for child, src_child in zip(self.children, src.children):
            child.gather(i, src_child, rows)

    def copy_row(self, dst: int, src: "StructColumn", src_row: int) -> None:
        for child, src_child in zip(self.children, src.children):
            child.copy_row(dst, src_child, src_row)

    def to_arrow(self, n: int) -> pa.Array:
        arrays = [c.to_arrow(n) for c in self.children]
        mask = self._mask(n)
        return pa.StructArray.from_arrays(
            arrays, names=self.names, mask=None if mask is None else pa.array(mask)
        )

    def reset_nulls(self) -> None:
        super().reset_nulls()
        for child in self.children:
            child.reset_nulls()


def shift(rows: np.ndarray | slice, offset: int) -> np.ndarray | slice:
    """Row indices (array or slice) moved by ``offset``."""
    if not offset:
        return rows
    if isinstance(rows, slice):
        return slice(rows.start + offset, rows.stop + offset)
    return np.asarray(rows) + offset


def make_column(spec: dict[str, Any], capacity: int) -> _Column:
    if spec["type"] in ("Dict", "Tuple"):
        return StructColumn(spec, capacity)
    if schema.is_image(spec):
        return ImageColumn(spec, capacity)
    return ArrayColumn(spec, capacity)


def row_bytes(spec: dict[str, Any]) -> int:
    """Bytes one value of ``spec`` takes in a buffer."""
    if spec["type"] == "Dict":
        return sum(row_bytes(s) for s in spec["spaces"].values())
    if spec["type"] == "Tuple":
        return sum(row_bytes(s) for s in spec["spaces"])
    return schema.flat_size(spec) * (1 if schema.is_image(spec) else 8)


def sparse_to_arrow(spec: dict[str, Any], rows: list[int], values: list[Any], n: int) -> tuple[pa.Array, list[str]]:
    """A length-``n`` column holding ``values`` at ``rows`` and nulls elsewhere.

    Values that do not fit ``spec`` become nulls; their errors are returned.
    """
    col = make_column(spec, max(len(values), 1))
    failures = []
    for k, v in enumerate(values):
        try:
            col.set(k, v)
        except Exception as exc:
            col.set_null(k)
            failures.append(f"{type(exc).__name__}: {exc}")
    return scatter(col.to_arrow(len(values)), rows, n), failures


def scatter(values: pa.Array, rows: list[int] | np.ndarray, n: int) -> pa.Array:
    """Place ``values[k]`` at row ``rows[k]`` of a length-``n`` column of nulls."""
    index = np.full(n, -1, dtype=np.int64)
    index[np.asarray(rows, dtype=np.int64)] = np.arange(len(values), dtype=np.int64)
    return values.take(pa.array(index, mask=index < 0))


def snapshot(value: Any) -> Any:
    """A copy of an observation that later in-place changes cannot alter."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(snapshot(v) for v in value)
    return value


class Sparse:
    """A column most rows leave empty: (row, value) pairs, nulls elsewhere."""

    __slots__ = ("rows", "values")

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.values: list[Any] = []

    def add(self, row: int, value: Any) -> None:
        self.rows.append(row)
        self.values.append(value)

    def extend(self, rows: Any, values: Any) -> None:
        self.rows.extend(rows)
        self.values.extend(values)

    def to_arrow(self, n: int, type_: pa.DataType | None = None) -> pa.Array:
        type_ = type_ if type_ is not None else _scalar_type(self.values)
        if type_ == pa.string():
            values = pa.array([text_of(v) for v in self.values], pa.string())
        elif pa.types.is_floating(type_):
            values = pa.array(np.asarray(self.values, dtype=np.float64), type_, from_pandas=False)
        else:
            values = pa.array(self.values, type_)
        return scatter(values, self.rows, n)


def _scalar_type(values: list[Any]) -> pa.DataType:
    """Column type of normalised info values: bool < float64 < string."""
    kinds = set(map(type, values))
    if str in kinds:
        return pa.string()
    if kinds == {bool}:
        return pa.bool_()
    return pa.float64()


def normalise(value: Any) -> Any:
    """A storable scalar (bool, float or str) for an info value, or raise."""
    t = type(value)
    if t is float or t is bool or t is str:
        return value
    if t is int:
        return float(value)
    if isinstance(value, np.generic):
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, (np.integer, np.floating)):
            return float(value)
        if isinstance(value, np.str_):
            return str(value)
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "biuf":
        return normalise(value.reshape(()).item())
    if isinstance(value, (int, float)):  # int/float subclasses, e.g. IntEnum
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise TypeError(type(value).__name__ + (f" of shape {value.shape}" if hasattr(value, "shape") else ""))
