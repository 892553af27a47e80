"""``rlaudit sql``: output formats, the prompt, and the sandbox."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

import rlaudit
from rlaudit.cli import main
from tests.analyzer.recording import record_run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = tmp_path_factory.mktemp("sqlstore")
    record_run(s, "r1", [[1.0, 2.0], [3.0]])
    record_run(s, "r2", [[5.0]])
    return s


def _sql(*args, input=None):
    return CliRunner().invoke(main, ["sql", *map(str, args)], input=input)


def test_table_output(store):
    res = _sql(store, "SELECT run_id, sum(return) AS total FROM episodes GROUP BY run_id ORDER BY run_id")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["run_id", "total"]
    assert lines[1].split() == ["r1", "6"] and lines[2].split() == ["r2", "5"]
    assert lines[-1] == "(2 rows)"


def test_csv_and_json_output(store):
    q = "SELECT run_id, episode, length FROM episodes ORDER BY run_id, episode"
    res = _sql(store, q, "--format", "csv")
    assert list(csv.reader(io.StringIO(res.output))) == [
        ["run_id", "episode", "length"], ["r1", "0", "2"], ["r1", "1", "1"], ["r2", "0", "1"]]
    res = _sql(store, "--format", "json", "-c", q)
    assert json.loads(res.output) == [
        {"run_id": "r1", "episode": 0, "length": 2}, {"run_id": "r1", "episode": 1, "length": 1},
        {"run_id": "r2", "episode": 0, "length": 1}]


def test_max_rows(store):
    res = _sql(store, "SELECT * FROM range(10)", "--max-rows", "3")
    assert "more than 3 rows" in res.output


def test_prompt_reads_queries_from_stdin(store):
    res = _sql(store, "--format", "csv", input="SELECT count(*) AS n FROM steps;\n.tables runs\nSELECT 1 AS one;\n")
    assert res.exit_code == 0, res.output
    assert "n\n4\n" in res.output and "one\n1\n" in res.output and "run_id" in res.output


def test_prompt_reports_errors_and_exits_2(store):
    res = _sql(store, input="SELECT * FROM nosuchview;\nSELECT 2 AS two;\n")
    assert res.exit_code == 2
    assert "nosuchview" in res.output and "two" in res.output


PASSWD_READS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd', header=false)",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM '/etc/passwd'",
]


@pytest.mark.parametrize("query", PASSWD_READS)
def test_sql_cannot_read_outside_the_store(store, query):
    res = _sql(store, query)
    assert res.exit_code == 2
    assert "root:" not in res.output
    assert "rlaudit: error:" in res.output


def test_sql_cannot_read_another_parquet_file(store, tmp_path):
    other = record_run(tmp_path, "secret", [[42.0]])
    res = _sql(store, f"SELECT * FROM read_parquet('{other}')")
    assert res.exit_code == 2 and "42" not in res.output.split("error:")[0]


WRITES = [
    "COPY (SELECT 1) TO '{out}'",
    "COPY (SELECT 1 AS reward) TO '{store_file}' (FORMAT parquet, USE_TMP_FILE false)",
    "EXPORT DATABASE '{dir}'",
    "ATTACH '{db}' AS x",
    "CREATE TABLE t AS SELECT 1",
    "SET enable_external_access = true",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT 1; COPY (SELECT 1) TO '{out}'",
]


@pytest.mark.parametrize("template", WRITES)
def test_sql_cannot_write(store, tmp_path, template):
    store_file = store / "r1.parquet"
    before = store_file.read_bytes()
    query = template.format(out=tmp_path / "out.csv", store_file=store_file, dir=tmp_path / "exp", db=tmp_path / "x.db")
    res = _sql(store, query)
    assert res.exit_code == 2, res.output
    assert list(tmp_path.iterdir()) == []
    assert store_file.read_bytes() == before


def test_sandbox_holds_for_the_connection_itself(store, tmp_path):
    """Even the raw DuckDB connection of a Store cannot read /etc/passwd or write files."""
    import duckdb

    with rlaudit.open(store) as s:
        con = s.connection
        with pytest.raises(duckdb.Error):
            con.execute("SELECT * FROM read_csv('/etc/passwd')").fetchall()
        with pytest.raises(duckdb.Error):
            con.execute(f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")
        with pytest.raises(duckdb.Error):
            con.execute("SET enable_external_access = true")
        # the views still read the store's own files
        assert con.execute("SELECT count(*) FROM steps").fetchone()[0] == 4
    assert list(tmp_path.iterdir()) == []
