"""The compliance page: U1's framework catalogues (`bastion.lineage.compliance`: each control
with a note on what bastion does about it, the rules covering it by taxonomy tag, and the
evidence/no-evidence/gap status of `bastion report compliance`), with the store evidence read
through the dashboard's indexed queries: per covering rule, its latest finding's run (an index
seek) and a count capped at `FIRING_CAP` (a bounded index range), and the latest run of each
command that evaluates the control's stage. `bastion report compliance` counts every firing
exactly; on a million findings that pass does not fit a page view."""

from __future__ import annotations

from typing import Any

from bastion.records import Record

FIRING_CAP = 100


class RuleFiring(Record):
    rule: str
    title: str
    findings: int  # capped at FIRING_CAP
    capped: bool
    latest_run: int
    latest_at: str


class ControlRow(Record):
    control: str
    title: str
    note: str
    status: str  # evidence | no-evidence | gap
    rules: tuple[str, ...]
    fired: tuple[RuleFiring, ...]
    runs: tuple[tuple[str, int, str, str], ...]  # (command, run id, started, status)


class Matrix(Record):
    framework: str
    title: str
    version: str
    url: str
    rows: tuple[ControlRow, ...]
    summary: dict[str, int]


def frameworks() -> dict[str, str]:
    from bastion.lineage.compliance import FRAMEWORKS, load_framework

    return {key: load_framework(key).title for key in FRAMEWORKS}


def matrix(framework_key: str, history: Any) -> Matrix:
    from bastion.catalogue import all_rules
    from bastion.lineage.compliance import (
        COVERED,
        GAP,
        NO_EVIDENCE,
        STAGE_COMMANDS,
        load_framework,
        rules_for,
    )

    framework = load_framework(framework_key)
    rules = all_rules()
    latest = history.latest_runs_by_command()
    firings: dict[str, RuleFiring | None] = {}
    rows = []
    for control in framework.controls:
        covering = rules_for(control.id, framework, rules)
        for rule in covering:
            if rule.id not in firings:
                found = history.rule_firing(rule.id, FIRING_CAP)
                firings[rule.id] = (
                    None
                    if found is None
                    else RuleFiring(
                        rule=rule.id,
                        title=rule.title,
                        findings=found[0],
                        capped=found[0] >= FIRING_CAP,
                        latest_run=found[1],
                        latest_at=found[2],
                    )
                )
        commands = sorted({c for r in covering for c in STAGE_COMMANDS.get(r.stage, ())})
        runs = tuple((c, *latest[c]) for c in commands if c in latest)
        fired = tuple(
            sorted(
                (f for r in covering if (f := firings.get(r.id)) is not None),
                key=lambda f: -f.latest_run,
            )
        )
        status = GAP if not covering else (COVERED if runs or fired else NO_EVIDENCE)
        rows.append(
            ControlRow(
                control=control.id,
                title=control.title,
                note=control.note,
                status=status,
                rules=tuple(r.id for r in covering),
                fired=fired,
                runs=runs,
            )
        )
    summary = {s: sum(r.status == s for r in rows) for s in (COVERED, NO_EVIDENCE, GAP)}
    return Matrix(
        framework=framework.key,
        title=framework.title,
        version=framework.version,
        url=framework.url,
        rows=tuple(rows),
        summary=summary,
    )
