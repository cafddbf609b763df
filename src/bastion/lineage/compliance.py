"""Compliance evidence: for each control (or technique) of a framework, the bastion rules that
cover it (by their taxonomy tags), the evidence the history store holds for them, and the gaps.
The frameworks are versioned data (taxonomy/frameworks/*.toml), each control with a note that
says what bastion does about it — including nothing."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from bastion.catalogue import all_rules
from bastion.errors import UsageError
from bastion.findings import Stage
from bastion.records import Record
from bastion.rules import Rule, taxonomy_version
from bastion.store import RuleEvidence, RunSummary, Store

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FRAMEWORKS_DIR = Path(__file__).parents[1] / "taxonomy" / "frameworks"
FRAMEWORKS = ("eu-ai-act", "nist-ai-rmf", "owasp-ml", "owasp-llm", "atlas")
SCHEMA_VERSION = "1"

# which commands judge the rules of a stage (the runs that are evidence for a control even
# when they found nothing)
STAGE_COMMANDS = {
    Stage.DATA: ("data",),
    Stage.CODE: ("code", "deps", "scan"),
    Stage.ARTIFACT: ("scan", "verify"),
    Stage.TESTING: ("probe",),
    Stage.DEPLOYMENT: ("guard", "gate"),
    Stage.MONITORING: ("guard",),
}

COVERED, NO_EVIDENCE, GAP = "evidence", "no-evidence", "gap"


class Control(Record):
    id: str
    title: str
    note: str = ""


class Framework(Record):
    key: str
    title: str
    version: str
    url: str
    tag: str  # the Tags field rules carry for it
    controls: tuple[Control, ...]


class RuleRef(Record):
    id: str
    title: str
    severity: str
    stage: str


class RunRef(Record):
    id: int
    command: str
    started_at: str
    status: str
    targets: str


class ControlEvidence(Record):
    """One control: the rules covering it, their firings across the history, the latest runs
    of the commands that evaluate them, and the status (evidence, no-evidence, gap)."""

    control: Control
    status: str
    rules: tuple[RuleRef, ...] = ()
    firings: tuple[RuleEvidence, ...] = ()
    runs: tuple[RunRef, ...] = ()


class Summary(Record):
    controls: int
    with_evidence: int
    without_evidence: int
    gaps: int


class ComplianceReport(Record):
    framework: Framework
    generated_at: str
    store: str
    taxonomy_version: str
    totals: dict[str, int]
    summary: Summary
    controls: tuple[ControlEvidence, ...]


def load_framework(key: str) -> Framework:
    if key not in FRAMEWORKS:
        raise UsageError(f"unknown framework {key!r}: one of {', '.join(FRAMEWORKS)}")
    data = tomllib.loads((FRAMEWORKS_DIR / f"{key}.toml").read_text("utf-8"))
    return Framework.model_validate(data)


def covers(control: str, tag: str) -> bool:
    """A rule tagged `tag` covers `control` when they are equal or the tag is a part of it
    (MEASURE 2.7 of MEASURE 2, AML.T0024.002 of AML.T0024, Art.15(5) of Art.15)."""
    return tag == control or (tag.startswith(control) and tag[len(control)] in ".(")


def rules_for(control: str, framework: Framework, rules: list[Rule]) -> list[Rule]:
    """The rules covering a control (also the dashboard's compliance page, bastion.ui)."""
    return [r for r in rules if any(covers(control, t) for t in getattr(r.tags, framework.tag))]


def build(store: Store, framework_key: str, now: dt.datetime | None = None) -> ComplianceReport:
    framework = load_framework(framework_key)
    rules = all_rules()
    firings = store.rule_evidence()
    latest = store.latest_runs_by_command()
    controls = []
    for control in framework.controls:
        covering = rules_for(control.id, framework, rules)
        commands = sorted({c for r in covering for c in STAGE_COMMANDS.get(r.stage, ())})
        runs = [_run_ref(latest[c]) for c in commands if c in latest]
        fired = [firings[r.id] for r in covering if r.id in firings]
        status = GAP if not covering else (COVERED if runs or fired else NO_EVIDENCE)
        controls.append(
            ControlEvidence(
                control=control,
                status=status,
                rules=tuple(
                    RuleRef(id=r.id, title=r.title, severity=r.severity.value, stage=r.stage.value)
                    for r in covering
                ),
                firings=tuple(sorted(fired, key=lambda f: -f.latest_run)),
                runs=tuple(runs),
            )
        )
    summary = Summary(
        controls=len(controls),
        with_evidence=sum(c.status == COVERED for c in controls),
        without_evidence=sum(c.status == NO_EVIDENCE for c in controls),
        gaps=sum(c.status == GAP for c in controls),
    )
    return ComplianceReport(
        framework=framework,
        generated_at=(now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds"),
        store=str(store.path),
        taxonomy_version=taxonomy_version(),
        totals=store.counts(),
        summary=summary,
        controls=tuple(controls),
    )


def _run_ref(run: RunSummary) -> RunRef:
    return RunRef(
        id=run.id,
        command=run.command,
        started_at=run.started_at,
        status=run.status,
        targets=run.targets[:300],
    )


def render_json(report: ComplianceReport) -> str:
    import json

    return (
        json.dumps({"schema_version": SCHEMA_VERSION, **report.model_dump(mode="json")}, indent=2)
        + "\n"
    )


def _md(text: str) -> str:
    """Markdown table cell text: no pipes, newlines or markup from stored content."""
    import html

    return html.escape(text.replace("|", "\\|").replace("\n", " "), quote=False)


def render_md(report: ComplianceReport) -> str:
    fw = report.framework
    s = report.summary
    lines = [
        f"# Compliance evidence: {fw.title} ({fw.version})",
        "",
        f"Generated {report.generated_at} from `{_md(report.store)}` "
        f"({report.totals.get('runs', 0):,} runs, {report.totals.get('findings', 0):,} "
        f"findings); taxonomy {report.taxonomy_version}. Source: {fw.url}",
        "",
        f"{s.controls} controls: {s.with_evidence} with evidence, {s.without_evidence} covered "
        f"by rules but without runs yet, {s.gaps} not covered by bastion.",
        "",
        "| control | title | status | rules | latest evidence | note |",
        "|---|---|---|---|---|---|",
    ]
    for c in report.controls:
        evidence = (
            "; ".join(f"{r.command} #{r.id} {r.status} {r.started_at}" for r in c.runs) or "—"
        )
        rules = ", ".join(r.id for r in c.rules) or "—"
        lines.append(
            f"| {_md(c.control.id)} | {_md(c.control.title)} | {c.status} | {rules} | "
            f"{_md(evidence)} | {_md(c.control.note)} |"
        )
    lines += [
        "",
        "Status: *evidence* — rules cover the control and the store holds runs of the commands "
        "that evaluate them; *no-evidence* — covered, but nothing was run yet; *gap* — no "
        "bastion rule covers it (see the note: organisational, or not bastion's scope).",
    ]
    return "\n".join(lines) + "\n"


def render_html(report: ComplianceReport) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("bastion.lineage", "templates"),
        autoescape=select_autoescape(default=True),
    )
    return env.get_template("compliance.html").render(report=report)


RENDERERS = {"json": render_json, "md": render_md, "html": render_html}
