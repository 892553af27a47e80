"""The ``rlaudit`` command line. Thin: parses options, calls the library, prints.

Training commands import ``rlaudit.agents`` lazily inside the command, so the
core commands never load torch.
"""

from __future__ import annotations

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
      rlaudit demo                      train, record, audit and report on the career env
      rlaudit runs runs/                list the runs in a store
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
    from rlaudit.recorder.store_files import list_runs

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
    from rlaudit.recorder.store_files import recover_runs

    recovered, skipped = recover_runs(paths)
    for run_id, reason in skipped:
        click.echo(f"rlaudit: not recovered: {run_id}: {reason}", err=True)
    for path, steps in recovered:
        click.echo(f"recovered {path} ({steps:,} steps)")
    if not recovered and not skipped:
        click.echo("nothing to recover")


# --- analysis commands ----------------------------------------------------


# --- training commands ----------------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    main()
