"""The ``rlaudit`` command line. Thin: parses options, calls the library, prints.

Training commands import ``rlaudit.agents`` lazily inside the command, so the
core commands never load torch.
"""

from __future__ import annotations

import os
import sys

import click

from rlaudit import __version__
from rlaudit.errors import RlauditError

EXIT_USAGE = 2


class _Group(click.Group):
    """Maps every RlauditError to a one-line message and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RlauditError as exc:
            click.echo(f"rlaudit: error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("rlaudit: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rlaudit")
def main():
    """rlaudit: record RL training to Parquet and audit it afterwards.

    \b
    Typical use:
      rlaudit demo                      train and record the demo runs on the career env
      rlaudit runs runs/                list the runs in a store
      rlaudit analyze runs/             run the detectors; audit.json, report.html; exit status for CI
      rlaudit report out/audit.json     render the HTML report of an audit (or of a store)
      rlaudit sql runs/ "SELECT ..."    query the steps / episodes / runs / metrics views
      rlaudit compare runs/             agents against heuristic baselines across seeds
      rlaudit recover runs/             finalise runs left behind by a killed process
      rlaudit replay RUN --episode N    re-simulate an episode; branch it with another action or policy
      rlaudit ope RUN --policy NAME     off-policy estimate of a policy's value from logged logp
      rlaudit import KIND SRC --store runs/   import a Minari dataset, monitor.csv or TensorBoard scalars
    """


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


# --- store commands -------------------------------------------------------


@main.command("runs")
@click.argument("paths", nargs=-1, required=True)
def runs_command(paths):
    """List the runs in PATHS (files, directories, globs, .parts folders)."""
    from rlaudit.layout import list_runs

    infos, problems = list_runs(paths)
    for problem in problems:
        click.echo(f"rlaudit: skipped {problem}", err=True)
    if not infos:
        raise RlauditError(
            f"no rlaudit runs found in {', '.join(paths)}; expected <run_id>.parquet files "
            "or <run_id>.parquet.parts folders written by the recorder"
        )
    rows = [
        [
            i.run_id,
            i.status,
            f"{i.steps:,}",
            f"{i.episodes:,}",
            i.env_id or "-",
            i.agent or "-",
            _human_bytes(i.size_bytes),
        ]
        for i in infos
    ]
    _print_table(["run_id", "status", "steps", "episodes", "env", "agent", "size"], rows)


@main.command("recover")
@click.argument("paths", nargs=-1, required=True)
def recover_command(paths):
    """Finalise runs left unfinished by a killed process (.parquet.parts folders).

    Runs whose recording process is still alive are left alone.
    """
    from rlaudit.recorder.recover import recover_runs

    recovered, skipped = recover_runs(paths)
    for run_id, reason in skipped:
        click.echo(f"rlaudit: not recovered: {run_id}: {reason}", err=True)
    for path, steps in recovered:
        click.echo(f"recovered {path} ({steps:,} steps)")
    if not recovered and not skipped:
        click.echo("nothing to recover")


# --- analysis commands ----------------------------------------------------

_SQL_START = ("select", "with", "from", "describe", "show", "summarize", "explain", "pivot", "unpivot", "table", "values", "(")


def _looks_like_sql(text: str) -> bool:
    stripped = text.strip().lower()
    return any(c.isspace() for c in stripped) or stripped.startswith(_SQL_START)


class _AnalyzeProgress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal (or forced)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.drawn = False

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * done / max(total, 1))
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}"[:100]
        click.echo(line.ljust(100), err=True, nl=False)
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            click.echo("\r" + " " * 100 + "\r", err=True, nl=False)


def _finding_span(f) -> str:
    parts = []
    if f.episode_start is not None:
        ep = f"episode {f.episode_start}" if f.episode_start == f.episode_end else f"episodes {f.episode_start}-{f.episode_end}"
        parts.append(ep)
    if f.step_start is not None:
        st = (f"global_step {f.step_start:,}" if f.step_start == f.step_end
              else f"global_step {f.step_start:,}-{f.step_end:,}")
        parts.append(st)
    if f.env_index is not None:
        parts.append(f"env {f.env_index}")
    if f.phase is not None:
        parts.append(f.phase)
    if f.q_value is not None:
        parts.append(f"p={f.p_value:.3g} q={f.q_value:.3g}")
    return ", ".join(parts)


def _print_audit(audit, out_path, fail_on: str) -> None:
    total_steps = sum(r.steps for r in audit.runs)
    click.echo(
        f"rlaudit {audit.rlaudit_version}: {len(audit.runs)} run{'s' if len(audit.runs) != 1 else ''}, "
        f"{total_steps:,} steps, {len(audit.detectors)} detector{'s' if len(audit.detectors) != 1 else ''}"
    )
    for p in audit.problems:
        click.echo(f"skipped input: {p.path}: {p.reason}")
    for p in audit.plugin_problems:
        click.echo(f"plug-in not loaded: {p.path}: {p.reason}")
    by_run: dict[str, list] = {}
    for f in audit.findings:
        by_run.setdefault(f.run_id or "(store)", []).append(f)
    quiet: dict[str, list] = {}
    for r in audit.results:
        if r.status in ("skipped", "error"):
            quiet.setdefault(r.run_id or "(store)", []).append(r)
    width = max([len(d.name) for d in audit.detectors] + [8])
    for run in audit.runs:
        state = run.status + (" (partial)" if run.partial and run.status != "in_progress" else "")
        risk = "" if run.risk is None else f"  risk {run.risk:.2f}"
        click.echo(f"\nrun {run.run_id}  {state}  {run.steps:,} steps  {run.episodes:,} episodes  "
                   f"verdict: {run.verdict}{risk}")
        for f in by_run.get(run.run_id, []):
            click.echo(f"  {f.severity:<8}  {f.detector:<{width}}  {f.summary}")
            span = _finding_span(f)
            if span:
                click.echo(f"  {'':<8}  {'':<{width}}  [{span}]")
        for r in quiet.get(run.run_id, []):
            click.echo(f"  {r.status:<8}  {r.detector:<{width}}  {r.reason}")
    store_wide = by_run.get("(store)", []) + quiet.get("(store)", [])
    if store_wide:
        click.echo("\nstore-wide")
        for f in by_run.get("(store)", []):
            click.echo(f"  {f.severity:<8}  {f.detector:<{width}}  {f.summary}")
        for r in quiet.get("(store)", []):
            click.echo(f"  {r.status:<8}  {r.detector:<{width}}  {r.reason}")
    comp = audit.comparison
    if comp and comp.get("tests"):
        verdicts = ", ".join(f"{t['group']} {t['verdict']}" for t in comp["tests"])
        click.echo(f"\ncomparison by {comp['by']} against {comp['baseline']}: {verdicts} "
                   "(details: rlaudit compare, or comparison in audit.json)")
    counts = audit.counts()
    statuses = audit.status_counts()
    click.echo(
        "\nfindings: " + ", ".join(f"{counts[s]} {s}" for s in ("critical", "warning", "info"))
        + "; detector runs: " + ", ".join(f"{n} {s}" for s, n in statuses.items())
    )
    if out_path is not None:
        click.echo(f"wrote {out_path}")
    code = audit.exit_code(fail_on)
    if code == 1:
        click.echo(f"result: findings at or above --fail-on {fail_on}")
    elif code == 2:
        click.echo("result: incomplete audit (inputs left out or detector errors)")


@main.command("analyze")
@click.argument("paths", nargs=-1, required=True)
@click.option("--out", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Directory to write audit.json into.")
@click.option("--preset", "presets", multiple=True, help="Detector preset (repeatable); default: all.")
@click.option("--detector", "-d", "detectors", multiple=True, help="Run this detector (repeatable).")
@click.option("--set", "sets", multiple=True, metavar="DETECTOR.PARAM=VALUE",
              help="Override a detector threshold, e.g. --set reward-spike.z=8 (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Terminal output: a summary, or the audit JSON.")
@click.option("--fail-on", type=click.Choice(["info", "warning", "critical"]), default="critical",
              show_default=True, help="Exit 1 when a finding is at least this severe.")
@click.option("--jobs", "-j", type=int, default=1, show_default=True,
              help="Detector runs in parallel (pays for many small runs).")
@click.option("--threads", type=int, default=None, help="DuckDB threads (default: all cores).")
@click.option("--memory-limit", default=None, help="DuckDB memory limit, e.g. 2GB.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--reference", "reference", multiple=True, metavar="RUN",
              help="A clean run to learn thresholds from (repeatable); default: each run's own early phase.")
@click.option("--export", "exports", multiple=True, type=click.Choice(["tensorboard", "wandb-json"]),
              help="Also write the findings as TensorBoard event files or W&B-style JSON into --out (repeatable).")
@click.option("--report/--no-report", "with_report", default=True, show_default=True,
              help="Also write report.html beside audit.json.")
def analyze_command(paths, out_dir, presets, detectors, sets, fmt, fail_on, jobs, threads, memory_limit, progress,
                    reference, exports, with_report):
    """Run the detectors over every run in PATHS; print findings, write audit.json and report.html.

    \b
    Exit status: 0 nothing reached --fail-on; 1 a finding did;
    2 usage or input error (also when an input file was left out or a
    detector raised, so the audit is incomplete).
    """
    from rlaudit.detectors.registry import parse_set
    from rlaudit.reports.audit import run_audit

    overrides = parse_set(sets)
    bar = _AnalyzeProgress(sys.stderr.isatty() if progress is None else progress)
    try:
        audit = run_audit(paths, presets=presets, detectors=detectors, overrides=overrides, jobs=jobs,
                          threads=threads, memory_limit=memory_limit, progress=bar, reference=reference)
    finally:
        bar.close()
    out_path = audit.write(out_dir)
    if exports:
        from rlaudit.reports.export import export

        for path in export(audit, out_dir, exports):
            click.echo(f"wrote {path}", err=fmt == "json")
    report_path = None
    if with_report:
        from rlaudit.reports.html import write_report

        report_path = write_report(audit, out_path.parent)
    if fmt == "json":
        click.echo(audit.to_json(), nl=False)
    else:
        _print_audit(audit, out_path, fail_on)
        if report_path is not None:
            click.echo(f"wrote {report_path}")
    sys.exit(audit.exit_code(fail_on))


def _sql_cell(value, limit: int = 40) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_sql_cell(v, limit) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {_sql_cell(v, limit)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _emit_result(result, fmt: str, max_rows: int) -> None:
    import csv
    import json

    from rlaudit.detectors.model import plain

    columns = result.columns
    if fmt == "table":
        rows = result.head(max_rows + 1)
        shown = rows[:max_rows]
        _print_table(columns, [[_sql_cell(v) for v in r] for r in shown])
        if len(rows) > max_rows:
            click.echo(f"(more than {max_rows} rows; showing {max_rows}, use --max-rows or --format csv)")
        else:
            click.echo(f"({len(shown)} row{'s' if len(shown) != 1 else ''})")
        return
    reader = result.relation.to_arrow_reader()
    out = sys.stdout
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for batch in reader:
            for row in batch.to_pylist():
                writer.writerow([json.dumps(plain(v)) if isinstance(v, (list, dict)) else ("" if v is None else v)
                                 for v in (row[c] for c in batch.schema.names)])
        return
    out.write("[")
    first = True
    for batch in reader:
        for row in batch.to_pylist():
            out.write(("\n " if first else ",\n ") + json.dumps(plain(row), default=str))
            first = False
    out.write("\n]\n" if not first else "]\n")


def _sql_shell(store, fmt: str, max_rows: int) -> None:
    """Read queries from stdin (a prompt when it is a terminal); dot commands: .tables .schema .quit."""
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        click.echo(f"{store!r}; views: steps, episodes, runs, metrics. End queries with ';', .help for help.")
    buffer = ""
    failed = False
    while True:
        try:
            line = input("rlaudit> " if not buffer else "   ...> ") if interactive else sys.stdin.readline()
        except EOFError:
            line = None
        if line is None or (not interactive and line == ""):
            if buffer.strip():
                failed |= _shell_run(store, buffer, fmt, max_rows)
            break
        stripped = line.strip()
        if not buffer and stripped.startswith("."):
            cmd, _, arg = stripped.partition(" ")
            if cmd in (".quit", ".exit"):
                break
            if cmd == ".help":
                click.echo(".tables  list the views and their columns\n.schema VIEW  columns and types of a view\n.quit")
            elif cmd in (".tables", ".schema"):
                for view in ([arg.strip()] if arg.strip() else ["steps", "episodes", "runs", "metrics"]):
                    failed |= _shell_run(store, f"DESCRIBE {view}", "table", 1000)
            else:
                click.echo(f"unknown command {cmd}; try .help", err=True)
            continue
        buffer += line + ("\n" if interactive else "")
        if stripped.endswith(";"):
            failed |= _shell_run(store, buffer, fmt, max_rows)
            buffer = ""
    if failed and not interactive:
        sys.exit(EXIT_USAGE)


def _shell_run(store, text: str, fmt: str, max_rows: int) -> bool:
    try:
        for statement in store.connection.extract_statements(text):
            _emit_result(store.sql(statement.query.strip().rstrip(";")), fmt, max_rows)
    except RlauditError as exc:
        click.echo(f"rlaudit: error: {exc}", err=True)
        return True
    except Exception as exc:  # DuckDB runtime errors (e.g. a cast failing mid-query)
        click.echo(f"rlaudit: error: {str(exc).strip().splitlines()[0]}", err=True)
        return True
    return False


@main.command("sql")
@click.argument("args", nargs=-1, required=True, metavar="PATH... [QUERY]")
@click.option("--command", "-c", "query", default=None, help="The query (then every argument is a path).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--max-rows", type=int, default=1000, show_default=True, help="Rows printed in table format.")
def sql_command(args, query, fmt, max_rows):
    """Query the store in PATHS with SQL over the views steps, episodes, runs, metrics.

    \b
    rlaudit sql runs/ "SELECT run_id, avg(return) FROM episodes GROUP BY run_id"
    rlaudit sql runs/                 interactive prompt on the same views
    Queries are read-only: they cannot write files or read outside the store.
    """
    from rlaudit.analyzer.store import open as open_store

    paths = list(args)
    if query is None and len(paths) >= 2 and _looks_like_sql(paths[-1]):
        query = paths.pop()
    elif query is None and len(paths) == 1 and _looks_like_sql(paths[0]) and not os.path.exists(paths[0]):
        raise RlauditError("no store path given; usage: rlaudit sql PATH... \"SELECT ...\"")
    with open_store(*paths) as store:
        for p in store.problems:
            click.echo(f"rlaudit: skipped {p}", err=True)
        if query is None:
            _sql_shell(store, fmt, max_rows)
            return
        try:
            _emit_result(store.sql(query), fmt, max_rows)
        except RlauditError:
            raise
        except Exception as exc:  # DuckDB runtime errors while fetching
            raise RlauditError(f"SQL error: {str(exc).strip().splitlines()[0]}") from None


@main.command("detectors")
@click.argument("names", nargs=-1)
@click.option("--preset", "presets", multiple=True, help="Only the detectors of this preset.")
@click.option("--playbook", is_flag=True, help="Print the failure playbook (Markdown) of the built-in detectors.")
def detectors_command(names, presets, playbook):
    """List the detectors (name, severity, summary) and presets; with NAMES, their full documentation."""
    from rlaudit.detectors.presets import PRESETS
    from rlaudit.detectors.registry import DOC_SECTIONS, get_registry

    registry = get_registry()
    for origin, reason in registry.load_problems:
        click.echo(f"rlaudit: plug-in not loaded: {origin}: {reason}", err=True)
    if playbook:
        from rlaudit.detectors.playbook import render

        click.echo(render(registry), nl=False)
        return
    if names:
        for i, name in enumerate(names):
            spec = registry.get(name)
            if i:
                click.echo("")
            click.echo(f"{spec.name}  ({spec.severity}; needs {', '.join(spec.needs) or 'nothing'}; {spec.origin})")
            click.echo(f"  {spec.summary}")
            for section in DOC_SECTIONS:
                click.echo(f"\n{section}:")
                for para in spec.sections[section].split("\n\n"):
                    click.echo(click.wrap_text(para, width=88, initial_indent="  ", subsequent_indent="  "))
            if spec.params:
                click.echo("\nParameters (--set " + spec.name + ".NAME=VALUE):")
                for key, default in spec.params.items():
                    click.echo(f"  {key} = {default!r}")
        return
    specs = registry.select(presets) if presets else registry.specs()
    _print_table(["name", "severity", "summary"], [[s.name, s.severity, s.summary] for s in specs])
    if not presets:
        click.echo("\npresets: " + ", ".join(
            f"{name} ({'every detector except legacy-*' if members is None else ', '.join(members)})"
            for name, members in sorted(PRESETS.items())))


# --- training commands ----------------------------------------------------


def _key_values(pairs: tuple[str, ...], what: str) -> dict:
    """Parse KEY=VALUE options; VALUE is read as JSON (numbers, true, [64, 64]) or else text."""
    import json

    from rlaudit.errors import ConfigError

    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} must look like KEY=VALUE (e.g. learning_rate=0.001); found {pair!r}")
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def _train_protocol(ctx, protocol_file, options: dict):
    """The protocol from --protocol (JSON) with the options given on the command line on top."""
    import json

    from click.core import ParameterSource

    from rlaudit.agents.experiments import ExperimentProtocol
    from rlaudit.errors import ConfigError

    values: dict = {}
    if protocol_file is not None:
        try:
            with open(protocol_file, encoding="utf-8") as fh:
                values = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--protocol {protocol_file}: expected a JSON protocol file ({exc})") from None
        if isinstance(values, dict) and isinstance(values.get("protocol"), dict):
            values = values["protocol"]  # an ExperimentResult dump (train --json)
        elif isinstance(values, dict) and isinstance((values.get("config") or {}).get("protocol"), dict):
            values = values["config"]["protocol"]  # a run manifest
        if not isinstance(values, dict):
            raise ConfigError(f"--protocol {protocol_file}: expected a JSON object of protocol fields")
    for name, value in options.items():
        if protocol_file is None or ctx.get_parameter_source(name) is not ParameterSource.DEFAULT:
            values[name] = value
    if ctx.get_parameter_source("steps") is not ParameterSource.DEFAULT and options.get("steps") is not None:
        if ctx.get_parameter_source("episodes") is ParameterSource.DEFAULT:
            values["episodes"] = None
    for key, opt in (("agent_params", "agent_param"), ("reward_params", "reward_param"), ("env_params", "env_param")):
        given = values.pop(opt, ())
        if given:
            values[key] = {**values.get(key, {}), **_key_values(given, f"--{opt.replace('_', '-')}")}
    if values.get("name") is None:
        values.pop("name", None)
    return ExperimentProtocol.from_dict(values)


class _Progress:
    """Progress bar on stderr: training episodes (or steps), last return, last evaluation, elapsed."""

    def __init__(self, protocol):
        self.by_steps = protocol.episodes is None
        total = protocol.steps if self.by_steps else protocol.episodes
        self.last_return = None
        self.last_eval = None
        self.elapsed = 0.0
        self.done = 0
        self.bar = click.progressbar(
            length=total,
            label=protocol.run_id,
            file=sys.stderr,
            show_eta=False,
            item_show_func=self._describe,
        )

    def _describe(self, _item=None):
        parts = []
        if self.last_return is not None:
            parts.append(f"return {self.last_return:8.2f}")
        if self.last_eval is not None:
            parts.append(f"eval {self.last_eval:8.2f}")
        parts.append(f"{self.elapsed:5.0f}s")
        return "  ".join(parts)

    def __call__(self, report):
        self.elapsed = report.elapsed
        if report.phase == "eval":
            self.last_eval = report.ret
            self.bar.update(0, report)
            return
        self.last_return = report.ret
        now = report.train_steps if self.by_steps else report.episode
        step = min(now, self.bar.length) - self.done
        self.done += step
        self.bar.update(step, report)


@main.command("train")
@click.option("--agent", default="ppo", show_default=True, help="dqn, ppo or a heuristic (always_switch, random, ...).")
@click.option("--reward", default="short_term_v1", show_default=True, help="Reward name from the registry.")
@click.option("--regime", default="stable", show_default=True, help="Market regime: stable, boom, recession, volatile.")
@click.option("--episodes", type=int, default=100, show_default=True, help="Training episodes.")
@click.option("--steps", type=int, default=None, help="Training steps instead of episodes (the episode in progress is finished).")
@click.option("--seed", type=int, default=0, show_default=True, help="Root seed of the run.")
@click.option("--store", default="runs", show_default=True, type=click.Path(file_okay=False), help="Store folder.")
@click.option("--eval-interval", "eval_interval", type=int, default=20, show_default=True,
              help="Training episodes between greedy evaluations (0: only after training).")
@click.option("--eval-episodes", "eval_episodes", type=int, default=10, show_default=True,
              help="Greedy episodes per evaluation (0: none).")
@click.option("--agent-param", "-p", "agent_param", multiple=True, metavar="KEY=VALUE",
              help="Agent hyper-parameter, e.g. -p learning_rate=0.0005 -p hidden_sizes=[128,128].")
@click.option("--reward-param", "reward_param", multiple=True, metavar="KEY=VALUE",
              help="Reward parameter, e.g. --reward-param burnout_weight=0.")
@click.option("--env-param", "env_param", multiple=True, metavar="KEY=VALUE",
              help="Environment parameter (wins over the regime), e.g. --env-param burnout_rate=0.2.")
@click.option("--run-id", "name", default=None, help="Run id (default <agent>-<reward>-<regime>-s<seed>).")
@click.option("--protocol", "protocol_file", type=click.Path(dir_okay=False), default=None,
              help="JSON protocol (or a result/manifest holding one); options given explicitly win.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of text.")
@click.pass_context
def train_command(ctx, agent, reward, regime, episodes, steps, seed, store, eval_interval, eval_episodes,
                  agent_param, reward_param, env_param, name, protocol_file, as_json):
    """Train an agent on the career env and record every step into STORE.

    \b
    Example:
      rlaudit train --agent ppo --reward short_term_v1 --regime stable --episodes 300 --seed 0 --store runs/

    An existing run id is never overwritten: pick another --run-id or --seed.
    """
    import json

    from rlaudit.agents.experiments import run_experiment

    options = {
        "agent": agent, "reward": reward, "regime": regime, "episodes": episodes, "steps": steps,
        "seed": seed, "eval_interval": eval_interval, "eval_episodes": eval_episodes,
        "agent_param": agent_param, "reward_param": reward_param, "env_param": env_param, "name": name,
    }
    protocol = _train_protocol(ctx, protocol_file, options)
    progress = _Progress(protocol)
    with progress.bar:
        result = run_experiment(protocol, store, progress=progress)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(f"run id: {result.run_id}")
    click.echo(result.summary())


@main.command("demo")
@click.option("--store", default="rlaudit-demo", show_default=True, type=click.Path(file_okay=False),
              help="Store folder for the demo runs.")
@click.option("--quick", is_flag=True, help="One seed and a few episodes per run (seconds, for a smoke test).")
@click.option("--workers", type=int, default=None, help="Runs recorded in parallel (default: 2, one per core).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Where audit.json and report.html go (default: STORE/audit).")
def demo_command(store, quick, workers, out_dir):
    """Train and record the demo set on the career env, audit it, write the report.

    PPO and DQN (3 seeds), seven heuristic baselines, always_switch in a
    recession, and a reward-hacking DQN paid for salary only (burnout is its
    auditor column). Runs already in STORE are kept and skipped. Ends with
    'rlaudit analyze STORE --out STORE/audit' and prints the report's path.
    """
    from rlaudit.agents.demo import demo_protocols, run_demo

    planned = demo_protocols(quick=quick)
    bar = click.progressbar(length=len(planned), label="demo runs", file=sys.stderr, show_eta=False,
                            item_show_func=lambda item: item or "")

    def on_done(run_id, result, reason):
        bar.update(1, run_id if reason is None else f"{run_id} (skipped)")

    with bar:
        summary = run_demo(store, quick=quick, workers=workers, on_done=on_done)
    rows = []
    for r in summary.results:
        p = r.protocol
        final = "-" if r.final_eval_mean is None else f"{r.final_eval_mean:.2f}"
        rows.append([r.run_id, p.agent, p.reward, p.regime, final, f"{r.total_steps:,}", f"{r.wall_time:.1f}s"])
    if rows:
        _print_table(["run_id", "agent", "reward", "regime", "final_eval", "steps", "time"], rows)
    for run_id, reason in summary.skipped:
        click.echo(f"skipped {run_id}: {reason}")
    click.echo(f"recorded {len(summary.results)} runs into {summary.store}"
               + (f" ({len(summary.skipped)} skipped)" if summary.skipped else ""))
    from rlaudit.reports.audit import run_audit
    from rlaudit.reports.html import write_report

    audit = run_audit([str(summary.store)])
    out = audit.write(out_dir if out_dir is not None else os.path.join(str(summary.store), "audit"))
    counts = audit.counts()
    click.echo(f"audit: {counts['critical']} critical, {counts['warning']} warning, {counts['info']} info findings; "
               f"wrote {out}")
    click.echo(f"report: {write_report(audit, out.parent)}")


# --- report commands ------------------------------------------------------


@main.command("report")
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--output", "output", default="report.html", show_default=True,
              type=click.Path(dir_okay=True), help="The HTML file to write (a directory gets report.html).")
@click.option("--preset", "presets", multiple=True, help="Detector preset when auditing a store (repeatable).")
@click.option("--detector", "-d", "detectors", multiple=True, help="Detector when auditing a store (repeatable).")
@click.option("--set", "sets", multiple=True, metavar="DETECTOR.PARAM=VALUE", help="Threshold override (repeatable).")
def report_command(paths, output, presets, detectors, sets):
    """Write the HTML report for PATHS: an audit.json (or a folder holding one), or a store to audit first.

    \b
    rlaudit report out/audit.json -o review.html     render an existing audit
    rlaudit report runs/ -o report.html              audit the store, then render
    The report is one self-contained file: no network, readable offline, printable.
    """
    from rlaudit.reports.audit import AUDIT_FILENAME, Audit, run_audit
    from rlaudit.reports.html import write_report

    audits = [p for p in paths if p.endswith(".json") or os.path.isfile(os.path.join(p, AUDIT_FILENAME))]
    if audits and len(audits) != len(paths):
        raise RlauditError("give either one audit.json or store paths, not both; "
                           f"found the audit {audits[0]} among {len(paths)} paths")
    if audits:
        if len(audits) > 1:
            raise RlauditError(f"expected one audit.json, found {len(audits)}; render them one at a time")
        audit = Audit.load(audits[0])
        source = audits[0]
    else:
        from rlaudit.detectors.registry import parse_set

        audit = run_audit(paths, presets=presets, detectors=detectors, overrides=parse_set(sets))
        source = None
    from rlaudit.reports.suites import find_suites

    # stress.json / bench.json saved beside the audit or in the store add their sections
    folder = os.path.dirname(audits[0]) if audits and audits[0].endswith(".json") else (audits or paths)[0]
    path = write_report(audit, output, source=source, suites=find_suites(folder) if os.path.isdir(folder) else None)
    click.echo(f"wrote {path}")


# --- replay and comparison commands ---------------------------------------
# (rlaudit replay, rlaudit compare)


def _interval(iv: dict, digits: int = 4) -> str:
    return f"{iv['value']:.{digits}g} [{iv['low']:.{digits}g}, {iv['high']:.{digits}g}]"


def _print_comparison(data: dict, written: list) -> None:
    score = data["score"]
    click.echo(f"compare by {data['by']}: {len(data['groups'])} groups, "
               f"{sum(len(g['runs']) for g in data['groups'])} runs; baseline: {data['baseline'] or 'none'}")
    click.echo(f"score: {score['note']}")
    click.echo(f"intervals: {data['confidence']:.0%} stratified bootstrap, {data['resamples']:,} resamples, "
               f"seed {data['seed']}\n")
    tests = {t["group"]: t for t in data["tests"]}
    rows = []
    for g in data["groups"]:
        t = tests.get(g["name"])
        row = [g["name"], str(len(g["runs"])), _interval(g["iqm"]), f"{g['mean']['value']:.4g}",
               f"{g['median']['value']:.4g}"]
        if t is not None:
            row += [_interval(t["difference"]), _interval(t["prob_improvement"], 2), f"{t['welch_p']:.3g}",
                    f"{t['mannwhitney_p']:.3g}", t["verdict"], "-" if t["mde"] is None else f"{t['mde']:.4g}"]
        elif g["name"] == data["baseline"]:
            row += ["(baseline)", "", "", "", "", ""]
        else:
            row += ["", "", "", "", "", ""]
        rows.append(row)
    _print_table(["group", "n", "IQM [95% CI]", "mean", "median", "mean diff vs baseline", "P(improvement)",
                  "Welch p", "MWU p", "verdict", "MDE"], rows)
    # each note once, with the groups it concerns (all of them: no list)
    notes: dict[str, list[str]] = {}
    for t in data["tests"]:
        for part in (t["note"] or "").split("; "):
            if part:
                notes.setdefault(part, []).append(t["group"])
    if notes:
        click.echo("")
    for part, groups in notes.items():
        click.echo(f"note: {part}" if len(groups) == len(data["tests"]) else f"{', '.join(groups)}: {part}")
    click.echo("")
    for path in written:
        click.echo(f"wrote {path}")


def _make_baselines(paths) -> list[str]:
    """Record the heuristic baselines of the career-env runs in PATHS; the new run files."""
    from rlaudit.agents.baselines import record_baselines
    from rlaudit.analyzer.store import open as open_store

    with open_store(*paths) as store:
        manifests = [dict(store.runs[rid].manifest, run_id=rid) for rid in store.run_ids]
        folders = sorted({os.path.dirname(os.path.abspath(store.runs[rid].path)) for rid in store.run_ids})
    if len(folders) != 1:
        raise RlauditError(
            f"--make-baselines records into the folder of the runs; expected one folder, found {len(folders)} "
            f"({', '.join(folders[:3])}); compare the runs of one folder"
        )
    recorded = []

    def done(result):
        recorded.append(result.path)
        click.echo(f"recorded baseline {result.run_id} ({result.wall_time:.1f} s)", err=True)

    plan, _ = record_baselines(manifests, folders[0], on_done=done)
    if not plan.todo and not plan.present:
        raise RlauditError(
            "--make-baselines needs career-env runs recorded by rlaudit train (their manifest holds the "
            f"protocol); found none among {len(manifests)} runs"
        )
    click.echo(f"baselines: {len(recorded)} recorded, {len(plan.present)} already present", err=True)
    return recorded


@main.command("compare")
@click.argument("paths", nargs=-1, required=True)
@click.option("--by", default="agent", show_default=True, help="Group runs by agent, reward or regime.")
@click.option("--baseline", default=None,
              help="Group to test the others against (default with --by agent: the best heuristic).")
@click.option("--make-baselines", is_flag=True,
              help="First record the career env's heuristic baselines with the same seeds and protocol.")
@click.option("--resamples", type=int, default=50_000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--out", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Directory for comparison.json (an audit.json there gets the comparison too).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Terminal output: a table, or the comparison JSON.")
def compare_command(paths, by, baseline, make_baselines, resamples, seed, out_dir, fmt):
    """Compare groups of runs across seeds: IQM, mean, median with intervals, tests against a baseline.

    \b
    rlaudit compare runs/                          agents against the best heuristic
    rlaudit compare runs/ --make-baselines         record heuristic baselines first (career env)
    rlaudit compare runs/ppo-* --by regime --baseline stable
    Runs must share env id, and agent, reward and regime except the one grouped by.
    """
    from rlaudit.analyzer.compare import compare
    from rlaudit.reports.audit import comparison_json, write_comparison

    paths = list(paths)
    if make_baselines:
        new_files = _make_baselines(paths)
        if new_files:  # PATHS that named files (not the folder) do not cover the new runs yet
            from rlaudit.analyzer.store import open as open_store

            with open_store(*paths) as store:
                have = {os.path.realpath(store.runs[rid].path) for rid in store.run_ids}
            paths += [f for f in new_files if os.path.realpath(f) not in have]
    result = compare(paths, by=by, baseline=baseline, resamples=resamples, seed=seed)
    data = result.to_dict()
    written = [p for p in write_comparison(out_dir, data) if p is not None]
    if fmt == "json":
        click.echo(comparison_json(data), nl=False)
    else:
        _print_comparison(data, written)


def _open_run(paths, run_id):
    """The store under PATHS and the run to work on (the only run, or --run)."""
    from rlaudit.analyzer.store import open as open_store
    from rlaudit.errors import ConfigError, unknown_name

    store = open_store(*paths)
    for p in store.problems:
        click.echo(f"rlaudit: skipped {p}", err=True)
    if run_id is None:
        if len(store.run_ids) != 1:
            store.close()
            raise ConfigError(f"the store holds {len(store.run_ids)} runs ({', '.join(store.run_ids[:5])}"
                              f"{', ...' if len(store.run_ids) > 5 else ''}); name one with --run")
        run_id = store.run_ids[0]
    elif run_id not in store.runs:
        names = store.run_ids
        store.close()
        raise unknown_name("run", run_id, names)
    return store, run_id


def _is_career(manifest) -> bool:
    env = manifest.get("env")
    env_id = env.get("id") if isinstance(env, dict) else env
    return isinstance(env_id, str) and env_id.split(":")[-1] == "rlaudit/Career-v0"


def _named_policy(name: str, manifest, run_id: str):
    """A policy named on the command line: a heuristic of the career env, or module:attribute."""
    from rlaudit.analyzer.replay import load_callable
    from rlaudit.errors import ConfigError

    if ":" in name:
        return load_callable(name)
    from rlaudit.agents.heuristics import HEURISTICS, make_heuristic

    if name not in HEURISTICS:
        from rlaudit.errors import unknown_name

        raise unknown_name("policy", name, [*HEURISTICS, "module:attribute"])
    if not _is_career(manifest):
        raise ConfigError(f"heuristic {name!r} acts on the career env; run {run_id!r} is another env: "
                          "give the policy as module:attribute")
    return make_heuristic(name)


def _recorded_policy(run, spec: str | None):
    """The policy that acted in the run, rebuilt from its manifest (or --recorded module:attribute).

    A heuristic is rebuilt from its name, parameters and seed; a learned agent
    from the policy file saved beside the run (``config.policy_file``).
    """
    from pathlib import Path

    from rlaudit.errors import ReplayError

    manifest, run_id = run.manifest, run.run_id
    if spec is not None:
        return _named_policy(spec, manifest, run_id)
    agent = manifest.get("agent")
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    from rlaudit.agents.heuristics import HEURISTICS, make_heuristic

    if agent in HEURISTICS and _is_career(manifest):
        seed = config.get("agent_seed", manifest.get("seed"))
        params = manifest.get("hyperparameters") or {}
        return make_heuristic(agent, seed=seed, **params)
    if agent in ("dqn", "ppo"):
        policy_file = config.get("policy_file")
        if isinstance(policy_file, str) and (Path(run.path).parent / policy_file).is_file():
            from rlaudit.agents.common import load_policy

            return load_policy(Path(run.path).parent / policy_file)
        raise ReplayError(
            f"run {run_id!r} was recorded by a learned {agent} agent and keeps no saved policy to roll out"
            + (f" ({policy_file} is not beside the run)" if isinstance(policy_file, str) else "")
            + "; compare two branches (--policy A --policy B --against policy=A) or give --recorded module:attribute"
        )
    raise ReplayError(
        f"run {run_id!r} records agent {agent!r}, which rlaudit cannot rebuild; give the recorded policy as "
        "--recorded module:attribute, or compare two branches with --against"
    )


def _add_to_audit(audit_path: str, records: list) -> str:
    """Put ``records`` into audit.json's counterfactuals (same branch point and branch: replaced)."""
    import dataclasses

    from rlaudit.reports.audit import Audit

    audit = Audit.load(audit_path)

    def key(c):
        finding = c.get("finding") or {}
        return (c.get("kind"), c.get("run_id"), c.get("env_index"), c.get("episode"), c.get("t"),
                c.get("branch"), c.get("against"), c.get("target"), c.get("estimator"), c.get("phase"),
                finding.get("detector"), finding.get("summary"))

    new_keys = {key(r) for r in records}
    kept = [c for c in audit.counterfactuals if key(c) not in new_keys]
    audit = dataclasses.replace(audit, counterfactuals=tuple(kept) + tuple(records))
    return str(audit.write(audit_path))


def _interval_text(d) -> str:
    return f"{d['mean']:+.4g} [{d['low']:.4g}, {d['high']:.4g}]"


def _print_replay(record) -> None:
    f = record["fidelity"]
    where = f"run {record['run_id']} episode {record['episode']} t={record['t']}"
    if record.get("finding"):
        where += f"  ({record['finding']['detector']})"
    click.echo(where)
    if not f["replayable"]:
        click.echo(f"  not replayable: {f['reason']}")
        return
    click.echo(f"  fidelity: {f['checked_steps']} steps re-applied, max abs obs error {f['max_abs_obs_error']:.3g}")
    click.echo(f"  {record['branch']} minus {record['against']}, {record['rollouts']} paired rollouts "
               f"(mean [{record['confidence']:.0%} t-interval]):")
    values = record.get("values") or {}
    rows = []
    for d in record["differences"]:
        ref = values.get(record["against"], {}).get(d["signal"])
        alt = values.get(record["branch"], {}).get(d["signal"])
        rows.append(["  " + d["signal"], _interval_text(d),
                     "-" if ref is None else f"{ref:.4g}", "-" if alt is None else f"{alt:.4g}"])
    _print_table(["  signal", "difference", record["against"], record["branch"]], rows)
    if record.get("verdict"):
        click.echo(f"  verdict: {record['verdict']}")
    if record.get("note"):
        click.echo(f"  note: {record['note']}")


@main.command("replay")
@click.argument("paths", nargs=-1)
@click.option("--run", "run_id", default=None, help="Run id (needed when PATHS hold several runs).")
@click.option("--episode", type=int, default=None, help="Episode to replay (within --env-index).")
@click.option("--env-index", type=int, default=0, show_default=True, help="Sub-environment of a vector run.")
@click.option("--step", "t", type=int, default=0, show_default=True, help="Branch before this step of the episode.")
@click.option("--action", "actions", multiple=True, metavar="A",
              help="Take action A at the branch step (JSON: 1, [0.5, -1]); repeatable.")
@click.option("--then", "then", default=None, metavar="POLICY",
              help="Policy after an --action: a heuristic, module:attribute or recorded (the default).")
@click.option("--policy", "policies", multiple=True, metavar="NAME",
              help="Follow this policy from the branch step: a heuristic or module:attribute; repeatable.")
@click.option("--recorded", "recorded", default=None, metavar="POLICY",
              help="The recorded policy as module:attribute (default: rebuilt from the manifest).")
@click.option("--against", default="recorded", show_default=True,
              help="Reference branch: recorded, or a branch name such as policy=always_stay.")
@click.option("--rollouts", type=int, default=16, show_default=True, help="Paired rollouts per branch.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the rollout seeds.")
@click.option("--horizon", type=int, default=None, help="Steps per rollout (default: to the episode's end).")
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option("--check", is_flag=True, help="Only check replay fidelity of the episode.")
@click.option("--from-audit", "from_audit", default=None, type=click.Path(dir_okay=True),
              help="Replay every replayable finding of this audit.json and write the results into it.")
@click.option("--detector", "detectors", multiple=True,
              help="With --from-audit: findings of these detectors (default: reward-hacking, "
                   "boundary-exploitation, state-cycling, truncation-exploitation).")
@click.option("--audit", "audit_path", default=None, type=click.Path(),
              help="Also add the results to this audit.json's counterfactuals.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def replay_command(paths, run_id, episode, env_index, t, actions, then, policies, recorded, against, rollouts,
                   seed, horizon, confidence, check, from_audit, detectors, audit_path, as_json):
    """Re-simulate a recorded episode and branch it: another action or policy from step T.

    \b
    rlaudit replay runs/x.parquet --episode 3 --check
    rlaudit replay runs/x.parquet --episode 3 --step 40 --policy burnout_threshold
    rlaudit replay runs/x.parquet --episode 3 --step 40 --action 0
    rlaudit replay --from-audit audit.json           # confirm or refute flagged findings
    The env is rebuilt from the manifest and reset with the recorded seed;
    branches share rollout seeds (common random numbers). See docs/replay.md.
    """
    import json

    from rlaudit.analyzer import replay as rp
    from rlaudit.errors import ConfigError

    if from_audit is not None:
        _replay_audit(paths, from_audit, policies, recorded, detectors, rollouts, seed, horizon, confidence, as_json)
        return
    if not paths:
        raise ConfigError("no run given; usage: rlaudit replay RUN.parquet --episode N [--step T] "
                          "(--action A | --policy NAME), or --from-audit audit.json")
    if episode is None:
        raise ConfigError("which episode? expected --episode N (see `rlaudit sql RUN \"SELECT * FROM episodes\"`)")
    store, run_id = _open_run(paths, run_id)
    with store:
        manifest = store.runs[run_id].manifest
        if check:
            fidelity = rp.check_fidelity(store, run_id, episode, env_index=env_index)
            if as_json:
                click.echo(json.dumps(fidelity.to_dict(), indent=1))
            elif fidelity.replayable:
                click.echo(f"replayable: run {run_id} episode {episode}: {fidelity.checked_steps} steps re-applied, "
                           f"max abs obs error {fidelity.max_abs_obs_error:.3g}, "
                           f"max abs reward error {fidelity.max_abs_reward_error:.3g}")
            else:
                click.echo(f"not replayable: {fidelity.reason}")
            if not fidelity.replayable:
                sys.exit(1)
            return
        if not actions and not policies:
            raise ConfigError("what to branch with? expected --action A or --policy NAME (or --check)")
        if then == "recorded":
            then = None
        needs_recorded = against == "recorded" or (actions and then is None)
        recorded_policy = _recorded_policy(store.runs[run_id], recorded) if needs_recorded else None
        branches = []
        for text in actions:
            try:
                action = json.loads(text)
            except ValueError:
                raise ConfigError(f"--action expects a JSON value such as 1 or [0.5, -1]; found {text!r}") from None
            follow = _named_policy(then, manifest, run_id) if then is not None else recorded_policy
            branches.append(rp.Branch.of_action(action, then=follow))
        for name in policies:
            branches.append(rp.Branch.of_policy(name, _named_policy(name, manifest, run_id)))
        results = rp.replay(store, run_id, episode, t, branches=branches, recorded_policy=recorded_policy,
                            against=against, env_index=env_index, rollouts=rollouts, seed=seed, horizon=horizon,
                            confidence=confidence)
    records = [r.to_dict() for r in results]
    if audit_path is not None:
        written = _add_to_audit(audit_path, records)
    if as_json:
        click.echo(json.dumps(records, indent=1))
    else:
        for r in records:
            _print_replay(r)
        if audit_path is not None:
            click.echo(f"wrote {written}")


def _replay_audit(paths, audit_file, policies, recorded, detectors, rollouts, seed, horizon, confidence, as_json):
    import json

    from rlaudit.analyzer import replay as rp
    from rlaudit.analyzer.store import open as open_store
    from rlaudit.reports.audit import Audit

    audit = Audit.load(audit_file)
    store = open_store(*(paths or audit.inputs))
    with store:
        for p in store.problems:
            click.echo(f"rlaudit: skipped {p}", err=True)
        wanted = detectors or rp.REPLAYABLE_DETECTORS
        findings = [f for f in audit.findings if f.detector in wanted]
        cache: dict = {}

        def baselines_for(run_id):
            manifest = store.runs[run_id].manifest if run_id in store.runs else {}
            names = policies or (DEFAULT_BASELINES if _is_career(manifest) else ())
            if not names:
                from rlaudit.errors import ConfigError

                raise ConfigError(f"run {run_id!r} is not the career env: name the honest baseline with "
                                  "--policy module:attribute")
            return {n: _named_policy(n, manifest, run_id) for n in names}

        def recorded_for(run_id):
            if run_id not in cache:
                try:
                    cache[run_id] = _recorded_policy(store.runs[run_id], recorded)
                except Exception as exc:
                    cache[run_id] = exc
            if isinstance(cache[run_id], Exception):
                raise cache[run_id]
            return cache[run_id]

        records = []
        for f in findings:
            if f.run_id in store.runs:
                baselines = baselines_for(f.run_id)
            else:
                baselines = {n: None for n in (policies or DEFAULT_BASELINES)}
            records += rp.replay_findings(store, [f], baselines, recorded_policy=recorded_for, detectors=wanted,
                                          rollouts=rollouts, seed=seed, horizon=horizon, confidence=confidence)
    if as_json:
        if records:
            _add_to_audit(audit_file, records)
        click.echo(json.dumps(records, indent=1))
        return
    if not records:
        click.echo(f"no findings of {', '.join(wanted)} in {audit_file}; nothing written")
        return
    written = _add_to_audit(audit_file, records)
    for r in records:
        _print_replay(r)
    counts = {v: sum(1 for r in records if r["verdict"] == v) for v in ("confirmed", "refuted", "inconclusive")}
    click.echo(f"{len(records)} counterfactual(s): " + ", ".join(f"{n} {v}" for v, n in counts.items())
               + f"; wrote {written}")


DEFAULT_BASELINES = ("burnout_threshold", "adaptive")
"""Honest heuristic baselines of the career env that --from-audit branches with by default."""


@main.command("ope")
@click.argument("paths", nargs=-1, required=True)
@click.option("--run", "run_id", default=None, help="Run id (needed when PATHS hold several runs).")
@click.option("--policy", "policy", required=True, metavar="NAME",
              help="Target policy: a heuristic, or module:attribute returning action probabilities.")
@click.option("--estimator", type=click.Choice(["wpdis", "dr"]), default="wpdis", show_default=True)
@click.option("--phase", type=click.Choice(["train", "eval"]), default=None, help="Only these episodes.")
@click.option("--gamma", type=float, default=None, help="Discount (default: the run's).")
@click.option("--resamples", type=int, default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option("--audit", "audit_path", default=None, type=click.Path(),
              help="Also add the estimate to this audit.json's counterfactuals.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def ope_command(paths, run_id, policy, estimator, phase, gamma, resamples, seed, confidence, audit_path, as_json):
    """Off-policy estimate of a target policy's value from a run's logged logp.

    \b
    rlaudit ope runs/x.parquet --policy burnout_threshold
    rlaudit ope runs/x.parquet --policy mypkg.policies:probs --estimator dr
    Weighted per-decision importance sampling (or weighted doubly robust with
    the logged q) with a bootstrap interval and the effective sample size;
    refused, with the reason, when the data cannot support it (docs/replay.md).
    """
    import json

    from rlaudit.analyzer.ope import estimate

    store, run_id = _open_run(paths, run_id)
    with store:
        target = _named_policy(policy, store.runs[run_id].manifest, run_id)
        result = estimate(store, run_id, target, target_name=policy, estimator=estimator, phase=phase, gamma=gamma,
                          confidence=confidence, resamples=resamples, seed=seed)
    record = result.to_dict()
    if audit_path is not None:
        written = _add_to_audit(audit_path, [record])
    if as_json:
        click.echo(json.dumps(record, indent=1))
    elif result.refused:
        click.echo(f"refused: {result.refused}")
    else:
        click.echo(f"{estimator} value of {policy} on run {run_id}: {result.value:.4g} "
                   f"[{result.low:.4g}, {result.high:.4g}] ({confidence:.0%} bootstrap), "
                   f"{result.episodes} episodes, effective sample size {result.ess:.3g}")
        if result.note:
            click.echo(f"note: {result.note}")
    if audit_path is not None and not as_json:
        click.echo(f"wrote {written}")


# --- integration commands -------------------------------------------------
# (rlaudit import)


@main.command("import")
@click.argument("kind")
@click.argument("source")
@click.option("--store", required=True, type=click.Path(file_okay=False), help="Store folder to write the run into.")
@click.option("--run-id", "run_id", default=None,
              help="Run id of the import (default: from the source). For tensorboard, an existing run gets the metrics.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_command(kind, source, store, run_id, as_json):
    """Import another tool's data into a store as an rlaudit run.

    \b
    KIND is one of:
      minari       a Minari dataset: its folder, or a local dataset id (extra: rlaudit[minari])
      monitor      an SB3 monitor.csv, or a folder of them (one per sub-env): episode-level
      tensorboard  scalars of TensorBoard event files into a metrics table (extra: rlaudit[tensorboard])

    A run is never overwritten, and a source already imported into the store
    is refused unless --run-id names a new run.
    """
    import dataclasses
    import json

    from rlaudit.integrations.importers import import_source

    result = import_source(kind, source, store, run_id=run_id)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=1, sort_keys=True))
        return
    what = [f"{result.steps:,} steps" if result.steps else "", f"{result.episodes:,} episodes" if result.episodes else "",
            f"{result.metrics:,} metric values" if result.metrics else ""]
    verb = "attached to run" if result.attached else "imported as run"
    click.echo(f"{verb} {result.run_id}: {', '.join(w for w in what if w)} -> {result.path}")
    for note in result.notes:
        click.echo(f"note: {note}")


# --- experiment suites ----------------------------------------------------
# (rlaudit stress, rlaudit bench)


def _fmt_interval(summary: dict) -> str:
    mean, low, high = summary.get("mean"), summary.get("low"), summary.get("high")
    if mean is None or mean != mean:
        return "-"
    if low is None or low != low:
        return f"{mean:.3g}"
    return f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def _write_json(path, data) -> None:
    import json
    import os
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str, allow_nan=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _suite_report(audit, store):
    """report.html of a suite's store, with the sections of every suite result saved there."""
    from rlaudit.reports.html import write_report
    from rlaudit.reports.suites import find_suites

    return write_report(audit, store, suites=find_suites(store))


def _run_progress(total: int, label: str):
    """A progress bar over recorded runs and the ``on_done`` callback that advances it."""
    bar = click.progressbar(length=total, label=label, file=sys.stderr, show_eta=False,
                            item_show_func=lambda item: item or "")

    def on_done(run_id, result, reason):
        bar.update(1, run_id if reason is None else f"{run_id} (reused)")

    return bar, on_done


def _held(passed: bool | None) -> str:
    return "n/a (1 seed)" if passed is None else ("held" if passed else "did not hold")


@main.command("stress")
@click.option("--store", default="rlaudit-stress", show_default=True, type=click.Path(file_okay=False),
              help="Store folder; runs already in it are reused (an interrupted suite resumes).")
@click.option("--only", default="", metavar="T1.1,T3.3,...", help="Run only these tests (comma-separated).")
@click.option("--seeds", type=int, default=3, show_default=True, help="Seeds per test.")
@click.option("--quick", is_flag=True, help="A reduced budget (12 episodes of at most 60 steps): a smoke test.")
@click.option("--episodes", type=int, default=None, help="Training episodes per run (default 50, the reference's).")
@click.option("--workers", type=int, default=None, help="Runs recorded in parallel (default: 2, one per core).")
def stress_command(store, only, seeds, quick, episodes, workers):
    """Run the stress tests T0.1-T8.1, audit their runs, check the expected findings.

    \b
    Prints a table per test (measurement over seeds with 95% t-intervals,
    whether the hypothesis held, whether the analyser found the expected
    failure) and writes STORE/stress.json. docs/stress-tests.md explains
    each test. Exit status 1 when an expected finding was missed.
    """
    import dataclasses

    from rlaudit.suites.stress import DEFAULT_BUDGET, QUICK_BUDGET, run_stress, select_tests, stress_protocols
    from rlaudit.errors import ConfigError

    budget = QUICK_BUDGET if quick else DEFAULT_BUDGET
    if episodes is not None:
        if episodes < 1:
            raise ConfigError(f"--episodes must be a positive integer; found {episodes}")
        budget = dataclasses.replace(budget, episodes=episodes)
    names = [n.strip() for n in only.split(",") if n.strip()]
    planned = stress_protocols(select_tests(names), seeds, budget)
    bar, on_done = _run_progress(len(planned), "stress runs")
    audit_bar = _AnalyzeProgress(sys.stderr.isatty())
    try:
        with bar:
            report, audit = run_stress(store, only=names, seeds=seeds, budget=budget, workers=workers,
                                       on_done=on_done, audit_progress=audit_bar)
    finally:
        audit_bar.close()
    rows = []
    for o in report.outcomes:
        first = True
        for key, summary in o.summary.items():
            detected = "-" if o.detected is None else ("yes" if o.detected else "MISSED")
            rows.append([o.test.id if first else "", o.test.title if first else "", key, _fmt_interval(summary),
                         _held(o.passed) if first else "", detected if first else ""])
            first = False
    _print_table(["test", "title", "measure", f"mean [95% CI] over {seeds} seed(s)", "hypothesis", "finding"], rows)
    for o in report.outcomes:
        for label, d in o.detections.items():
            click.echo(f"{o.test.id}: {label} found on {len(d['found'])}/{len(d['found']) + len(d['missed'])} runs"
                       + (f"; missed on {', '.join(d['missed'])}" if d["missed"] else ""))
    out = f"{store}/stress.json"
    _write_json(out, report.to_dict())
    audit_path = audit.write(store)
    html = _suite_report(audit, store)
    click.echo(f"wrote {out}, {audit_path} and {html} ({report.recorded} runs recorded, {report.reused} reused)")
    sys.exit(1 if any(o.detected is False for o in report.outcomes) else 0)



@main.command("bench")
@click.option("--store", default="rlaudit-bench", show_default=True, type=click.Path(file_okay=False),
              help="Store folder; runs already in it are reused (an interrupted matrix resumes).")
@click.option("--agents", default="", metavar="dqn,ppo,...", help="Agents (comma-separated; default: all nine).")
@click.option("--rewards", default="", metavar="short_term_v1,...", help="Rewards (comma-separated; default: all five).")
@click.option("--seeds", type=int, default=3, show_default=True, help="Seeds per agent and reward.")
@click.option("--quick", is_flag=True, help="A reduced budget (6 episodes of at most 50 steps): a smoke test.")
@click.option("--workers", type=int, default=None, help="Runs recorded in parallel (default: 2, one per core).")
def bench_command(store, agents, rewards, seeds, quick, workers):
    """Run the 9 agents x 5 rewards matrix, audit it, rank the agents per reward.

    \b
    Prints per reward the agents ranked by the IQM of their final
    evaluation returns with 95% stratified-bootstrap intervals (overlapping
    intervals share a rank range: a tie), the average per agent and per
    reward, and failure counts (runs with a finding, per detector); writes
    STORE/bench.json and STORE/audit.json.
    """
    from rlaudit.suites.bench import DEFAULT_BENCH_BUDGET, QUICK_BENCH_BUDGET, bench_protocols, fmt, run_bench

    budget = QUICK_BENCH_BUDGET if quick else DEFAULT_BENCH_BUDGET
    agent_names = [a.strip() for a in agents.split(",") if a.strip()]
    reward_names = [r.strip() for r in rewards.split(",") if r.strip()]
    planned = bench_protocols(agent_names, reward_names, seeds, budget)
    bar, on_done = _run_progress(len(planned), "bench runs")
    audit_bar = _AnalyzeProgress(sys.stderr.isatty())
    try:
        with bar:
            report, audit = run_bench(store, agents=agent_names, rewards=reward_names, seeds=seeds, budget=budget,
                                      workers=workers, on_done=on_done, audit_progress=audit_bar)
    finally:
        audit_bar.close()
    for reward in report.rewards:
        click.echo(f"\n{reward}")
        rows = []
        for row in report.rankings[reward]:
            rank = str(row["rank_best"]) if not row["tie"] else f"{row['rank_best']}-{row['rank_worst']} (tie)"
            rows.append([rank, row["name"], f"{fmt(row['iqm'])} [{fmt(row['low'])}, {fmt(row['high'])}]",
                         fmt(row["mean"]), str(row["n"])])
        _print_table(["rank", "agent", "IQM [95% CI]", "mean", "seeds"], rows)
    click.echo("\naverage over rewards")
    _print_table(["agent", "mean eval return"],
                 [[a, fmt(v)] for a, v in sorted(report.agent_average.items(), key=lambda kv: -kv[1])])
    click.echo("\naverage over agents")
    _print_table(["reward", "mean eval return"], [[r, fmt(v)] for r, v in report.reward_average.items()])
    detectors = sorted({d for counts in report.failures.values() for d in counts})
    if detectors:
        click.echo(f"\nruns with a finding (of {seeds * len(report.rewards)} per agent)")
        _print_table(["agent", *detectors],
                     [[a, *[str(report.failures[a].get(d, 0)) for d in detectors]] for a in report.agents])
    out = f"{store}/bench.json"
    _write_json(out, report.to_dict())
    audit_path = audit.write(store)
    html = _suite_report(audit, store)
    click.echo(f"\nwrote {out}, {audit_path} and {html} ({report.recorded} runs recorded, {report.reused} reused)")


if __name__ == "__main__":  # pragma: no cover
    main()
