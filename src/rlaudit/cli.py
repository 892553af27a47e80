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
      rlaudit analyze runs/             run the detectors; audit.json; exit status for CI
      rlaudit sql runs/ "SELECT ..."    query the steps / episodes / runs / metrics views
      rlaudit recover runs/             finalise runs left behind by a killed process
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
def analyze_command(paths, out_dir, presets, detectors, sets, fmt, fail_on, jobs, threads, memory_limit, progress,
                    reference):
    """Run the detectors over every run in PATHS; print findings, write audit.json.

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
    if fmt == "json":
        click.echo(audit.to_json(), nl=False)
    else:
        _print_audit(audit, out_path, fail_on)
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
def demo_command(store, quick, workers):
    """Train and record the demo set on the career env.

    PPO and DQN (3 seeds), seven heuristic baselines, always_switch in a
    recession, and a reward-hacking DQN paid for salary only (burnout is its
    auditor column). Runs already in STORE are kept and skipped.
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


# --- report commands ------------------------------------------------------
# (rlaudit report)


# --- replay and comparison commands ---------------------------------------
# (rlaudit replay, rlaudit compare)


# --- integration commands -------------------------------------------------
# (rlaudit import)


# --- experiment suites ----------------------------------------------------
# (rlaudit stress, rlaudit bench)


if __name__ == "__main__":  # pragma: no cover
    main()
