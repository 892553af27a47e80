"""``rlaudit.open(paths) -> Store``: one DuckDB connection with views over a trajectory store.

Views (documented in docs/analyzer.md):

``steps``     one row per environment step, every run's files read together
              (``union_by_name``: a column a run lacks reads as NULL)
``episodes``  one row per (run_id, env_index, episode)
``runs``      one row per run, from the manifests
``metrics``   per-update training metrics, long format

Queries bind parameters (``store.sql("... WHERE run_id = $run", run="a")``)
and come back as a :class:`Result` that converts to Arrow, polars or rows.
Once the views exist the connection is sandboxed: it can read only the
store's own files, cannot write files, cannot load extensions, and its
configuration is locked. :meth:`Store.sql` also accepts only read-only
statements (SELECT, EXPLAIN, DESCRIBE, SHOW, SUMMARIZE).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import duckdb
import pyarrow as pa

from rlaudit import schema
from rlaudit.analyzer.discovery import Problem, RunSource, discover
from rlaudit.errors import ConfigError, StoreError

__all__ = ["open", "Store", "Result", "Run", "Problem", "VIEWS"]

VIEWS = ("steps", "episodes", "runs", "metrics")

_READ_ONLY_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def _literal(text: str) -> str:
    """A SQL string literal. Only used for file paths inside view definitions,
    where DuckDB cannot bind parameters; user values are always bound."""
    if "\x00" in text:
        raise StoreError(f"path contains a NUL byte: {text!r}")
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


_EMPTY_METRICS = (
    "SELECT CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS BIGINT) AS global_step, "
    "CAST(NULL AS DOUBLE) AS wall_time, CAST(NULL AS VARCHAR) AS name, CAST(NULL AS DOUBLE) AS value WHERE false"
)


class Result:
    """The result of :meth:`Store.sql`: a query with its bound parameters, run on demand.

    Convert with :meth:`arrow`, :meth:`pl`, :meth:`rows`, :meth:`head`,
    :meth:`one` or :meth:`scalar`; each conversion runs the query. SQL errors
    raise :class:`~rlaudit.errors.ConfigError` with DuckDB's message.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any]):
        self._con = con
        self.query = query
        self.params = params
        self._rel: duckdb.DuckDBPyRelation | None = None

    def _run(self, query: str):
        try:
            return self._con.execute(query, self.params or None)
        except duckdb.Error as exc:
            raise ConfigError(f"SQL error: {_first_line(exc)}") from None

    @property
    def relation(self) -> duckdb.DuckDBPyRelation:
        """The query as a DuckDB relation (for DuckDB's own relational API)."""
        if self._rel is None:
            try:
                self._rel = self._con.sql(self.query, params=self.params or None)
            except duckdb.Error as exc:
                raise ConfigError(f"SQL error: {_first_line(exc)}") from None
        return self._rel

    @property
    def columns(self) -> list[str]:
        return list(self.relation.columns)

    def arrow(self) -> pa.Table:
        try:
            return self.relation.to_arrow_table()
        except duckdb.Error as exc:
            raise ConfigError(f"SQL error: {_first_line(exc)}") from None

    def pl(self):
        import polars as pl

        return pl.from_arrow(self.arrow())

    def rows(self) -> list[tuple]:
        try:
            return self._run(self.query).fetchall()
        except duckdb.Error as exc:
            raise ConfigError(f"SQL error: {_first_line(exc)}") from None

    def head(self, n: int) -> list[tuple]:
        """The first ``n`` rows (in the query's order)."""
        try:
            return self._run(f"SELECT * FROM ({self.query}) AS head LIMIT {int(n)}").fetchall()
        except duckdb.Error as exc:
            raise ConfigError(f"SQL error: {_first_line(exc)}") from None

    def one(self) -> tuple | None:
        """The first row (None when there is none)."""
        rows = self.head(1)
        return rows[0] if rows else None

    def scalar(self) -> Any:
        row = self.one()
        return None if row is None else row[0]

    def __iter__(self):
        return iter(self.rows())

    def __repr__(self) -> str:
        return f"Result({self.query!r}, params={self.params!r})"


@dataclass(frozen=True)
class Run:
    """A run of the store as the analyser sees it (see the ``runs`` view)."""

    run_id: str
    status: str
    partial: bool
    source: str
    path: str
    steps: int
    size_bytes: int
    columns: tuple[str, ...]
    struct_fields: dict[str, tuple[str, ...]]
    manifest: dict[str, Any]
    step_files: tuple[str, ...]
    metrics_files: tuple[str, ...]
    schema: pa.Schema = field(repr=False, compare=False)

    def has(self, column: str) -> bool:
        """True when the run stores ``column`` (``"info.burnout"`` for a struct field).

        An episode-level run (imported from episode summaries) has no step
        columns: its rows stand for whole episodes, see :attr:`episode_level`.
        """
        if self.episode_level is not None:
            return False
        if "." in column:
            top, _, sub = column.partition(".")
            return sub in self.struct_fields.get(top, ())
        return column in self.columns

    @property
    def episode_level(self) -> str | None:
        """Why the run holds one row per episode instead of one per step (None for step-level runs).

        Declared by importers in the manifest key ``episode_level``; each row
        then stands for one episode: ``reward`` is its return, ``t`` its last
        step, ``global_step`` the run's step count at that last step.
        """
        declared = self.manifest.get("episode_level")
        if not declared:
            return None
        reason = declared.get("reason") if isinstance(declared, dict) else None
        return reason if isinstance(reason, str) and reason else "the run holds episode-level data only"

    @property
    def gamma(self) -> float | None:
        g = self.manifest.get("gamma")
        if g is None and isinstance(self.manifest.get("config"), dict):
            g = self.manifest["config"].get("gamma")
        return float(g) if isinstance(g, (int, float)) else None


def _struct_fields(arrow_schema: pa.Schema) -> dict[str, tuple[str, ...]]:
    out = {}
    for f in arrow_schema:
        if pa.types.is_struct(f.type):
            out[f.name] = tuple(f.type.field(i).name for i in range(f.type.num_fields))
    return out


def _dig(manifest: dict[str, Any], *keys: str) -> Any:
    cur: Any = manifest
    for k in keys:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(k)
    return cur


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return value["name"]
    return json.dumps(value, sort_keys=True, default=repr)


def _to_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _to_float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _Queries:
    """Read-only query entry point shared by :class:`Store` and its cursors."""

    _con: duckdb.DuckDBPyConnection

    def sql(self, query: str, /, **params: Any) -> Result:
        """Run a read-only query with named parameters (``$name`` in the SQL)."""
        try:
            statements = self._con.extract_statements(query)
        except duckdb.Error as exc:
            raise ConfigError(f"SQL does not parse: {_first_line(exc)}") from None
        if not statements:
            raise ConfigError("empty SQL query")
        if len(statements) > 1:
            raise ConfigError(f"expected one SQL statement, found {len(statements)}")
        if statements[0].type not in _READ_ONLY_STATEMENTS:
            raise ConfigError(
                f"only read-only queries are allowed (SELECT, WITH, EXPLAIN, DESCRIBE, SHOW, SUMMARIZE); "
                f"found a {statements[0].type.name} statement"
            )
        query = statements[0].query.strip().rstrip(";").rstrip()
        return Result(self._con, query, dict(params))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Cursor(_Queries):
    """A separate connection to the same in-memory database, for use in another thread."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con

    def close(self) -> None:
        self._con.close()


class Store(_Queries):
    """Runs, views and a sandboxed DuckDB connection; see the module docstring."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        sandbox: bool = True,
    ):
        found = discover(paths)
        self.inputs: tuple[str, ...] = tuple(found.inputs)
        self.problems: tuple[Problem, ...] = tuple(found.problems)
        self._sources: dict[str, RunSource] = {r.run_id: r for r in found.runs}
        self.runs: dict[str, Run] = {
            r.run_id: Run(
                run_id=r.run_id,
                status=r.status,
                partial=r.partial,
                source=r.source,
                path=r.path,
                steps=r.steps,
                size_bytes=r.size_bytes,
                columns=r.columns,
                struct_fields=_struct_fields(r.schema),
                manifest=r.manifest,
                step_files=r.step_files,
                metrics_files=r.metrics_files,
                schema=r.schema,
            )
            for r in found.runs
        }
        self._con = duckdb.connect(":memory:")
        self._lock = threading.Lock()  # the main connection refuses concurrent calls
        self._types_cache: dict[tuple[str, bool], dict[str, str]] = {}  # Arrow schema -> DuckDB column types
        self._materialized = False
        try:
            if threads is not None:
                self._con.execute(f"SET threads = {int(threads)}")
            if memory_limit is not None:
                self._con.execute("SET memory_limit = ?", [str(memory_limit)])
            self._con.execute("SET parquet_metadata_cache = true")
            self._con.execute("SET enable_progress_bar = false")  # it would print into query output
            # NaN-correct reading (DuckDB 2.0): the views read Parquet with can_have_nan so
            # that isnan(x) / NOT isfinite(x) filters are not pruned away by min/max
            # statistics that leave NaN out; with it, the statistics-propagation optimizer
            # answers a lone max(x) from those statistics as NaN. Disabling that optimizer
            # keeps both right at no measurable cost (benchmarks/analyzer.py).
            self._con.execute("SET disabled_optimizers = 'statistics_propagation'")
            self._build_views()
            if sandbox:
                self._sandbox()
        except BaseException:
            self._con.close()
            raise

    # -- construction ------------------------------------------------------

    @property
    def step_files(self) -> list[str]:
        return [f for r in self._sources.values() for f in r.step_files]

    @property
    def metrics_files(self) -> list[str]:
        return [f for r in self._sources.values() for f in r.metrics_files]

    def _build_views(self) -> None:
        con = self._con
        files = self.step_files
        schemas = [r.schema for r in self._sources.values() if r.step_files]
        self._conflicts = conflicting_columns(schemas)
        if files and self._conflicts:
            # e.g. Discrete (integer) and Box (list) actions in one store: no common type exists, so
            # store-wide the column reads as JSON text; each run's scoped view keeps its own type.
            parts = []
            for source in self._sources.values():
                if not source.step_files:
                    continue
                run_files = "[" + ", ".join(_literal(f) for f in source.step_files) + "]"
                mine = [c for c in self._conflicts if c in source.schema.names]
                replace = (" REPLACE (" + ", ".join(f"CAST(to_json({ident(c)}) AS VARCHAR) AS {ident(c)}" for c in mine)
                           + ")") if mine else ""
                parts.append(f"SELECT *{replace} FROM read_parquet({run_files}, union_by_name = true, can_have_nan = true)")
            con.execute("CREATE VIEW steps AS " + " UNION ALL BY NAME ".join(parts))
        elif files:
            same = all(s.equals(schemas[0]) for s in schemas[1:])
            file_list = "[" + ", ".join(_literal(f) for f in files) + "]"
            union = "" if same else ", union_by_name = true"
            # can_have_nan: Parquet min/max statistics leave NaN out, so without it DuckDB
            # prunes row groups for predicates such as isnan(x) and silently returns no rows.
            con.execute(f"CREATE VIEW steps AS SELECT * FROM read_parquet({file_list}{union}, can_have_nan = true)")
        else:
            cols = ", ".join(
                f"CAST(NULL AS {_duck_type(f.type)}) AS {ident(f.name)}" for f in schema.CORE_STEP_FIELDS
            )
            con.execute(f"CREATE VIEW steps AS SELECT {cols} WHERE false")
        self._step_types = tuple(con.execute("SELECT column_name, column_type FROM (DESCRIBE steps)").fetchall())
        self._step_columns = tuple(c for c, _ in self._step_types)
        self._term_fields = self._struct_names("reward_terms")
        con.execute(f"CREATE VIEW episodes AS {self._episodes_sql()}")

        mfiles = self.metrics_files
        if mfiles:
            file_list = "[" + ", ".join(_literal(f) for f in mfiles) + "]"
            con.execute(
                "CREATE VIEW metrics AS SELECT CAST(run_id AS VARCHAR) AS run_id, global_step, wall_time, "
                f"CAST(name AS VARCHAR) AS name, value FROM read_parquet({file_list}, union_by_name = true, can_have_nan = true)"
            )
        else:
            con.execute(f"CREATE VIEW metrics AS {_EMPTY_METRICS}")
        runs_table = self._runs_table()
        con.register("_rlaudit_runs_arrow", runs_table)
        con.execute("CREATE TABLE _runs AS SELECT * FROM _rlaudit_runs_arrow ORDER BY run_id")
        con.unregister("_rlaudit_runs_arrow")
        con.execute("CREATE VIEW runs AS SELECT * FROM _runs")

    def _struct_names(self, column: str) -> tuple[str, ...]:
        if column not in self._step_columns:
            return ()
        names: list[str] = []
        for run in self.runs.values():
            for n in run.struct_fields.get(column, ()):
                if n not in names:
                    names.append(n)
        return tuple(names)

    def _episodes_sql(self) -> str:
        terms = ""
        if self._term_fields:
            packed = ", ".join(
                f"{ident(n)} := sum(reward_terms.{ident(n)})" for n in self._term_fields
            )
            terms = f"struct_pack({packed}) AS term_returns,\n"
        seed = "min(reset_seed)" if "reset_seed" in self._step_columns else "CAST(NULL AS BIGINT)"
        steps_sql = f"""
SELECT run_id, env_index, episode,
  any_value(phase) AS phase,
  count(*) AS length,
  sum(reward) AS return,
  {terms}  bool_or(terminated) AS terminated,
  bool_or(truncated) AS truncated,
  CASE WHEN bool_or(terminated) THEN 'terminated'
       WHEN bool_or(truncated) THEN 'truncated'
       ELSE 'unfinished' END AS termination,
  {seed} AS reset_seed,
  min(global_step) AS first_global_step,
  max(global_step) AS last_global_step
FROM steps"""
        summarised = sorted(rid for rid, run in self.runs.items() if run.episode_level is not None)
        if not summarised:
            return steps_sql + "\nGROUP BY run_id, env_index, episode"
        # Episode-level runs (imports of episode summaries): a row per episode whose t is
        # the episode's last step and whose reward is its return; termination is unknown.
        # In a vector run global_step grows by num_envs per step of one sub-env.
        ids = ", ".join(_literal(rid) for rid in summarised)
        widths = {rid: _to_int(self.runs[rid].manifest.get("num_envs")) or 1 for rid in summarised}
        width = "1"
        if any(w > 1 for w in widths.values()):
            width = "CASE run_id " + " ".join(
                f"WHEN {_literal(rid)} THEN {w}" for rid, w in sorted(widths.items()) if w > 1) + " ELSE 1 END"
        null_terms = ""
        if self._term_fields:
            null_terms = "struct_pack(" + ", ".join(
                f"{ident(n)} := CAST(NULL AS DOUBLE)" for n in self._term_fields) + ") AS term_returns,\n"
        return f"""{steps_sql}
WHERE run_id NOT IN ({ids})
GROUP BY run_id, env_index, episode
UNION ALL BY NAME
SELECT run_id, env_index, episode,
  any_value(phase) AS phase,
  max(t) + 1 AS length,
  sum(reward) AS return,
  {null_terms}  CAST(NULL AS BOOLEAN) AS terminated,
  CAST(NULL AS BOOLEAN) AS truncated,
  'unknown' AS termination,
  {seed} AS reset_seed,
  min(global_step - t * {width}) AS first_global_step,
  max(global_step) AS last_global_step
FROM steps
WHERE run_id IN ({ids})
GROUP BY run_id, env_index, episode"""

    def _runs_table(self) -> pa.Table:
        rows = []
        for run in self.runs.values():
            m = run.manifest
            env = m.get("env")
            env_id = _dig(m, "env", "id") if isinstance(env, dict) else env
            rows.append({
                "run_id": run.run_id,
                "status": run.status,
                "partial": run.partial,
                "source": run.source,
                "path": run.path,
                "steps": run.steps,
                "size_bytes": run.size_bytes,
                "schema_version": _to_int(m.get("schema_version")),
                "created_at": _as_text(m.get("created_at")),
                "ended_at": _as_text(m.get("ended_at")),
                "duration_s": _to_float(m.get("duration_s")),
                "env_id": _as_text(env_id),
                "num_envs": _to_int(m.get("num_envs")),
                "agent": _as_text(m.get("agent")),
                "seed": _to_int(m.get("seed")),
                "gamma": run.gamma,
                "columns": list(run.columns),
                "config": json.dumps(m.get("config"), sort_keys=True, default=repr),
                "manifest": json.dumps(m, sort_keys=True, default=repr),
            })
        fields = [
            ("run_id", pa.string()), ("status", pa.string()), ("partial", pa.bool_()), ("source", pa.string()),
            ("path", pa.string()), ("steps", pa.int64()), ("size_bytes", pa.int64()), ("schema_version", pa.int64()),
            ("created_at", pa.string()), ("ended_at", pa.string()), ("duration_s", pa.float64()),
            ("env_id", pa.string()), ("num_envs", pa.int64()), ("agent", pa.string()), ("seed", pa.int64()),
            ("gamma", pa.float64()), ("columns", pa.list_(pa.string())), ("config", pa.string()),
            ("manifest", pa.string()),
        ]
        arrow_schema = pa.schema(fields)
        return pa.Table.from_pylist(rows, schema=arrow_schema)

    def _sandbox(self) -> None:
        allowed = sorted(set(self.step_files) | set(self.metrics_files))
        con = self._con
        con.execute("SET allowed_paths = ?", [allowed])
        con.execute("SET allowed_directories = ?", [[]])
        con.execute("SET enable_external_access = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET lock_configuration = true")

    # -- public API ----------------------------------------------------------

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The underlying DuckDB connection (sandboxed; prefer :meth:`sql`)."""
        return self._con

    @property
    def run_ids(self) -> list[str]:
        return sorted(self.runs)

    @property
    def step_columns(self) -> tuple[str, ...]:
        """Columns of the ``steps`` view (the union over all runs)."""
        return self._step_columns

    @property
    def reward_terms(self) -> tuple[str, ...]:
        """Field names of ``reward_terms`` across all runs."""
        return self._term_fields

    @property
    def total_steps(self) -> int:
        return sum(r.steps for r in self.runs.values())

    @property
    def size_bytes(self) -> int:
        return sum(r.size_bytes for r in self.runs.values())

    def table(self, name: str) -> Result:
        """One of the views as a :class:`Result`."""
        if name not in VIEWS:
            raise ConfigError(f"unknown view {name!r}; expected one of {', '.join(VIEWS)}")
        return self.sql(f"SELECT * FROM {name}")

    def cursor(self) -> Cursor:
        """A connection for another thread, sharing views and sandbox."""
        with self._lock:
            return Cursor(self._con.cursor())

    def scoped(self, run_id: str) -> Cursor:
        """A cursor whose ``steps``, ``episodes`` and ``metrics`` read only ``run_id``'s files.

        Temporary views shadow the store-wide ones on this connection only,
        with the same columns and types (a column or struct field the run
        lacks reads as NULL, as it does store-wide). A query filtered on
        ``run_id = $run_id`` therefore returns the same rows through either,
        but here it never opens another run's files: detectors use this, and
        the SQL they report reproduces through the store-wide views.
        """
        if run_id not in self._sources:
            raise ConfigError(f"unknown run {run_id!r}")
        source = self._sources[run_id]
        with self._lock:
            con = self._con.cursor()
        try:
            if source.step_files:
                files = "[" + ", ".join(_literal(f) for f in source.step_files) + "]"
                scan = f"read_parquet({files}, union_by_name = true, can_have_nan = true)"
                key = (source.schema.to_string(show_schema_metadata=False), len(source.step_files) > 1)
                own = self._types_cache.get(key)
                if own is None:
                    own = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {scan})").fetchall())
                    self._types_cache[key] = own
                cols = []
                for name, dtype in self._step_types:
                    if name not in own:
                        cols.append(f"CAST(NULL AS {dtype}) AS {ident(name)}")
                    elif name in self._conflicts:
                        cols.append(ident(name))  # no common type with other runs: keep the run's own
                    elif own[name] != dtype:
                        cols.append(f"CAST({ident(name)} AS {dtype}) AS {ident(name)}")
                    else:
                        cols.append(ident(name))
                con.execute(f"CREATE TEMP VIEW steps AS SELECT {', '.join(cols)} FROM {scan}")
            else:
                cols = ", ".join(f"CAST(NULL AS {dtype}) AS {ident(name)}" for name, dtype in self._step_types)
                con.execute(f"CREATE TEMP VIEW steps AS SELECT {cols} WHERE false")
            if self._episodes_materialized(con):
                con.execute(f"CREATE TEMP VIEW episodes AS SELECT * FROM main._episodes WHERE run_id = {_literal(run_id)}")
            else:
                con.execute(f"CREATE TEMP VIEW episodes AS {self._episodes_sql()}")
            if source.metrics_files:
                files = "[" + ", ".join(_literal(f) for f in source.metrics_files) + "]"
                con.execute(
                    "CREATE TEMP VIEW metrics AS SELECT CAST(run_id AS VARCHAR) AS run_id, global_step, wall_time, "
                    f"CAST(name AS VARCHAR) AS name, value FROM read_parquet({files}, union_by_name = true, can_have_nan = true)"
                )
            else:
                con.execute(f"CREATE TEMP VIEW metrics AS {_EMPTY_METRICS}")
        except BaseException:
            con.close()
            raise
        return Cursor(con)

    def _episodes_materialized(self, con: duckdb.DuckDBPyConnection | None = None) -> bool:
        return self._materialized

    def materialize(self, view: str = "episodes") -> None:
        """Compute ``view`` once into an in-memory table that the view then reads.

        The audit does this for ``episodes``, which many detectors query.
        """
        if view != "episodes":
            raise ConfigError("only the episodes view can be materialised")
        if self._episodes_materialized():
            return
        with self._lock:
            self._con.execute(f"CREATE TABLE _episodes AS {self._episodes_sql()} ORDER BY run_id, env_index, episode")
            self._con.execute("CREATE OR REPLACE VIEW episodes AS SELECT * FROM _episodes")
            self._materialized = True

    def episode_counts(self) -> dict[str, int]:
        """Episodes per run (started episodes, including an unfinished last one).

        Episodes are numbered from 0 within each (run, env_index), so this
        needs only max(episode) per sub-env, not the episodes view.
        """
        rows = self.sql(
            "SELECT run_id, sum(n) FROM (SELECT run_id, env_index, max(episode) + 1 AS n FROM steps "
            "GROUP BY run_id, env_index) GROUP BY run_id"
        ).rows()
        counts = {rid: 0 for rid in self.runs}
        counts.update({rid: int(n) for rid, n in rows})
        return counts

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({len(self.runs)} runs, {self.total_steps:,} steps, {len(self.problems)} problems)"


def _type_kind(t: pa.DataType) -> str | None:
    """What a column's values are, for telling castable type differences from impossible ones."""
    if pa.types.is_null(t):
        return None
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return f"list<{_type_kind(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct"
    return str(t)


def conflicting_columns(schemas: Sequence[pa.Schema]) -> tuple[str, ...]:
    """Top-level columns whose values are of different kinds in different runs (a number in one, a list
    in another): no type holds both."""
    kinds: dict[str, set[str]] = {}
    for sch in schemas:
        for f in sch:
            kind = _type_kind(f.type)
            if kind is not None:
                kinds.setdefault(f.name, set()).add(kind)
    return tuple(sorted(name for name, k in kinds.items() if len(k) > 1))


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t) or pa.types.is_string(t):
        return "VARCHAR"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_floating(t):
        return "DOUBLE"
    raise ValueError(f"no DuckDB type for {t}")


def open(*paths: str | os.PathLike | Iterable[str | os.PathLike], threads: int | None = None,
         memory_limit: str | None = None, sandbox: bool = True) -> Store:
    """Open a trajectory store: files, globs, directories or ``.parquet.parts`` folders.

    ``rlaudit.open("runs/")`` and ``rlaudit.open("a.parquet", "b.parquet")``
    both work; so does a single list of paths. Unreadable files are left out
    and listed in ``store.problems``; :class:`~rlaudit.errors.StoreError` is
    raised only when a path does not exist or no run at all is readable.
    """
    flat: list[str | os.PathLike] = []
    for p in paths:
        if isinstance(p, (list, tuple)):
            flat.extend(p)
        else:
            flat.append(p)
    return Store(flat, threads=threads, memory_limit=memory_limit, sandbox=sandbox)
