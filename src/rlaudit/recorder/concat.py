"""Concatenate Parquet segments with identical schemas without decoding them.

A Parquet file is ``PAR1``, column-chunk bytes, a Thrift-encoded footer, its
length and ``PAR1``.  Column chunks are self-contained, so the segments'
chunk bytes can be copied one after the other; only the footer's absolute
offsets change.  This module reads each footer with a small Thrift compact
protocol codec, shifts the offsets, concatenates the row groups and writes
one footer with new key-value metadata.  Segments with page indexes or bloom
filters (whose contents hold absolute offsets too) are refused, so the caller
falls back to a decoding merge.
"""

from __future__ import annotations

import base64
import os
import struct
from pathlib import Path
from typing import Any

MAGIC = b"PAR1"

# Thrift compact types
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)

# Field ids in parquet.thrift
_FMD_SCHEMA, _FMD_NUM_ROWS, _FMD_ROW_GROUPS, _FMD_KV = 2, 3, 4, 5
_RG_COLUMNS, _RG_FILE_OFFSET, _RG_ORDINAL = 1, 5, 7
_CC_FILE_OFFSET, _CC_META, _CC_OFFSET_INDEX, _CC_COLUMN_INDEX = 2, 3, 4, 6
_CM_OFFSETS = (9, 10, 11)  # data_page_offset, index_page_offset, dictionary_page_offset
_CM_BLOOM = 14


class NotConcatenable(Exception):
    """The segments cannot be joined byte-wise; use a decoding merge."""


# -- Thrift compact protocol: a generic value tree --------------------------------
# struct -> list of [field_id, type, value]; list/set -> (elem_type, [values]);
# map -> (key_type, value_type, [(k, v)]); scalars as Python values.


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, t: int) -> Any:
        if t in (_TRUE, _FALSE):  # only inside containers: one byte per element
            return self.byte() == _TRUE
        if t == _BYTE:
            return struct.unpack("b", bytes([self.byte()]))[0]
        if t in (_I16, _I32, _I64):
            return self.zigzag()
        if t == _DOUBLE:
            v = struct.unpack("<d", self.data[self.pos : self.pos + 8])[0]
            self.pos += 8
            return v
        if t == _BINARY:
            n = self.varint()
            v = self.data[self.pos : self.pos + n]
            self.pos += n
            return v
        if t in (_LIST, _SET):
            head = self.byte()
            size, elem = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            return (elem, [self.value(elem) for _ in range(size)])
        if t == _MAP:
            size = self.varint()
            if size == 0:
                return (0, 0, [])
            kinds = self.byte()
            kt, vt = kinds >> 4, kinds & 0x0F
            return (kt, vt, [(self.value(kt), self.value(vt)) for _ in range(size)])
        if t == _STRUCT:
            return self.struct()
        raise NotConcatenable(f"unknown thrift type {t}")

    def struct(self) -> list[list[Any]]:
        fields: list[list[Any]] = []
        last = 0
        while True:
            head = self.byte()
            if head == _STOP:
                return fields
            delta, t = head >> 4, head & 0x0F
            fid = last + delta if delta else self.zigzag()
            if t in (_TRUE, _FALSE):
                value: Any = t == _TRUE
            else:
                value = self.value(t)
            fields.append([fid, t, value])
            last = fid


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()

    def varint(self, n: int) -> None:
        while True:
            if n < 0x80:
                self.out.append(n)
                return
            self.out.append((n & 0x7F) | 0x80)
            n >>= 7

    def zigzag(self, n: int) -> None:
        self.varint((n << 1) ^ (n >> 63))

    def value(self, t: int, v: Any) -> None:
        if t in (_TRUE, _FALSE):
            self.out.append(_TRUE if v else _FALSE)
        elif t == _BYTE:
            self.out += struct.pack("b", v)
        elif t in (_I16, _I32, _I64):
            self.zigzag(v)
        elif t == _DOUBLE:
            self.out += struct.pack("<d", v)
        elif t == _BINARY:
            self.varint(len(v))
            self.out += v
        elif t in (_LIST, _SET):
            elem, items = v
            if len(items) < 15:
                self.out.append((len(items) << 4) | elem)
            else:
                self.out.append(0xF0 | elem)
                self.varint(len(items))
            for item in items:
                self.value(elem, item)
        elif t == _MAP:
            kt, vt, items = v
            self.varint(len(items))
            if items:
                self.out.append((kt << 4) | vt)
                for k, val in items:
                    self.value(kt, k)
                    self.value(vt, val)
        elif t == _STRUCT:
            self.struct(v)
        else:
            raise NotConcatenable(f"unknown thrift type {t}")

    def struct(self, fields: list[list[Any]]) -> None:
        last = 0
        for fid, t, v in sorted(fields, key=lambda f: f[0]):
            wire_t = (_TRUE if v else _FALSE) if t in (_TRUE, _FALSE) else t
            delta = fid - last
            if 0 < delta <= 15:
                self.out.append((delta << 4) | wire_t)
            else:
                self.out.append(wire_t)
                self.zigzag(fid)
            if t not in (_TRUE, _FALSE):
                self.value(t, v)
            last = fid
        self.out.append(_STOP)


def _field(fields: list[list[Any]], fid: int) -> list[Any] | None:
    for f in fields:
        if f[0] == fid:
            return f
    return None


# -- segments ---------------------------------------------------------------------


def _read_footer(path: Path) -> tuple[list[list[Any]], int]:
    """(footer tree, size of the data region after the leading magic)."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size < 12:
            raise NotConcatenable(f"{path.name}: too small for Parquet")
        fh.seek(size - 8)
        tail = fh.read(8)
        if tail[4:] != MAGIC:
            raise NotConcatenable(f"{path.name}: no Parquet footer")
        footer_len = struct.unpack("<I", tail[:4])[0]
        fh.seek(size - 8 - footer_len)
        footer = fh.read(footer_len)
        fh.seek(0)
        if fh.read(4) != MAGIC:
            raise NotConcatenable(f"{path.name}: no leading magic")
    tree = _Reader(footer).struct()
    return tree, size - 8 - footer_len - 4


def _shift_row_group(rg: list[list[Any]], shift: int) -> None:
    f = _field(rg, _RG_FILE_OFFSET)
    if f is not None:
        f[2] += shift
    for cc in _field(rg, _RG_COLUMNS)[2][1]:
        if _field(cc, _CC_OFFSET_INDEX) is not None or _field(cc, _CC_COLUMN_INDEX) is not None:
            raise NotConcatenable("page indexes hold absolute offsets")
        f = _field(cc, _CC_FILE_OFFSET)
        if f is not None and f[2]:
            f[2] += shift
        meta = _field(cc, _CC_META)
        if meta is None:
            raise NotConcatenable("column chunk without inline metadata")
        if _field(meta[2], _CM_BLOOM) is not None:
            raise NotConcatenable("bloom filters hold absolute offsets")
        for fid in _CM_OFFSETS:
            f = _field(meta[2], fid)
            if f is not None:
                f[2] += shift


def concat_segments(paths: list[Path], out: Path, metadata: dict[bytes, bytes]) -> int:
    """Join ``paths`` (same schema) into ``out``; returns the rows written.

    ``metadata`` replaces the segments' key-value entries of the same keys.
    Raises NotConcatenable when the segments do not allow it.
    """
    footers = [_read_footer(p) for p in paths]
    first = footers[0][0]
    schema_bytes = _encoded(_field(first, _FMD_SCHEMA))
    kv_first = _kv(first)
    for tree, _ in footers[1:]:
        if _encoded(_field(tree, _FMD_SCHEMA)) != schema_bytes or _kv(tree).get(b"ARROW:schema") != kv_first.get(b"ARROW:schema"):
            raise NotConcatenable("segments differ in schema")
    row_groups: list[Any] = []
    rows = 0
    position = 4  # after the leading magic
    for tree, data_len in footers:
        for rg in _field(tree, _FMD_ROW_GROUPS)[2][1]:
            _shift_row_group(rg, position - 4)
            row_groups.append(rg)
        rows += _field(tree, _FMD_NUM_ROWS)[2]
        position += data_len
    for k, rg in enumerate(row_groups):
        f = _field(rg, _RG_ORDINAL)
        if f is not None:
            f[2] = k
    kv = {**kv_first, **metadata}
    if b"ARROW:schema" in kv:
        # readers take the schema metadata from the embedded Arrow schema, so it gets the new entries too
        import pyarrow.parquet as pq

        arrow_schema = pq.read_schema(paths[0])
        merged = {**(arrow_schema.metadata or {}), **metadata}
        kv[b"ARROW:schema"] = base64.b64encode(arrow_schema.with_metadata(merged).serialize().to_pybytes())
    footer = [f for f in first if f[0] not in (_FMD_NUM_ROWS, _FMD_ROW_GROUPS, _FMD_KV)]
    footer.append([_FMD_NUM_ROWS, _I64, rows])
    footer.append([_FMD_ROW_GROUPS, _LIST, (_STRUCT, row_groups)])
    footer.append([_FMD_KV, _LIST, (_STRUCT, [[[1, _BINARY, k], [2, _BINARY, v]] for k, v in kv.items()])])
    w = _Writer()
    w.struct(footer)
    with open(out, "wb") as dst:
        dst.write(MAGIC)
        for p, (_, data_len) in zip(paths, footers):
            with open(p, "rb") as src:
                src.seek(4)
                remaining = data_len
                while remaining:
                    chunk = src.read(min(remaining, 8 << 20))
                    if not chunk:
                        raise NotConcatenable(f"{p.name}: shorter than its footer says")
                    dst.write(chunk)
                    remaining -= len(chunk)
        dst.write(bytes(w.out))
        dst.write(struct.pack("<I", len(w.out)))
        dst.write(MAGIC)
    return rows


def _encoded(field: list[Any] | None) -> bytes:
    if field is None:
        return b""
    w = _Writer()
    w.value(field[1], field[2])
    return bytes(w.out)


def _kv(tree: list[list[Any]]) -> dict[bytes, bytes]:
    f = _field(tree, _FMD_KV)
    if f is None:
        return {}
    out = {}
    for entry in f[2][1]:
        key, value = _field(entry, 1), _field(entry, 2)
        out[key[2]] = value[2] if value is not None else b""
    return out
