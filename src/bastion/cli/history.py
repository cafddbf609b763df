"""`bastion history`, `bastion show` and `bastion rules`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bastion.report import FORMATS, render
from bastion.rules import all_rules

from .output import write_report


@click.command("history")
@click.option("--store", type=click.Path(dir_okay=False, path_type=Path), envvar="BASTION_STORE",
              help="History database [env BASTION_STORE].")
@click.option("--limit", "-n", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
def history_command(store: Path | None, limit: int, as_json: bool) -> None:
    """List recorded runs, newest first."""
    from bastion.store import Store, default_path

    history = Store(store or default_path())
    try:
        runs = history.runs(limit)
    finally:
        history.close()
    if as_json:
        for run in runs:
            click.echo(json.dumps(run.__dict__))
        return
    if not runs:
        click.echo("no runs recorded yet", err=True)
        return
    click.echo(f"{'RUN':>5}  {'STARTED':25}  {'COMMAND':9}  {'VERDICT':9}  {'FINDINGS':>8}  "
               "TARGETS")
    for run in runs:
        click.echo(f"{run.id:>5}  {run.started_at:25}  {run.command:9}  {run.status:9}  "
                   f"{run.findings:>8}  {run.targets}")


@click.command("show")
@click.argument("run_id", required=False, type=int)
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="text",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--store", type=click.Path(dir_okay=False, path_type=Path), envvar="BASTION_STORE")
def show_command(run_id: int | None, fmt: str, output: Path | None, store: Path | None) -> None:
    """Re-render a recorded run (default: the latest) in any format."""
    from bastion.store import Store, default_path

    history = Store(store or default_path())
    try:
        if run_id is None:
            run_id = history.latest_id()
            if run_id is None:
                raise click.ClickException("no runs recorded yet")
        report, verdict = history.load(run_id)
    finally:
        history.close()
    write_report(render(report, verdict, fmt), output)


@click.command("rules")
@click.option("--json", "as_json", is_flag=True, help="Print the catalogue as JSON.")
def rules_command(as_json: bool) -> None:
    """List every rule with its severity and taxonomy tags."""
    rules = all_rules()
    if as_json:
        data = [{**r.model_dump(mode="json"), "tags": r.tags.model_dump(mode="json")}
                for r in rules]
        click.echo(json.dumps(data, indent=2))
        return
    for rule in rules:
        tags = rule.tags
        click.echo(f"{rule.id:7} {rule.severity.value:8} {rule.title}")
        click.echo(f"        ATLAS {', '.join(tags.atlas)} | OWASP ML {', '.join(tags.owasp_ml)}"
                   f" | OWASP LLM {', '.join(tags.owasp_llm)} | NIST {', '.join(tags.nist_ai_rmf)}"
                   f" | EU AI Act {', '.join(tags.eu_ai_act)}")
