"""Report renderers. Every one takes the same (Report, Verdict) and returns text; each is
imported only when asked for (Jinja2 and the SARIF rule table cost start-up time)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module

from bastion.findings import Report
from bastion.policy import Verdict
from bastion.rules import Rule

FORMATS = ("text", "json", "sarif", "html", "junit")


def render(
    report: Report, verdict: Verdict, fmt: str, rules: Mapping[str, Rule] | None = None
) -> str:
    """`rules` (rule id -> Rule, bastion.catalogue.rules_by_id()) fills SARIF's rule table; a
    rule it does not hold gets a stub entry. The report layer never imports the checks."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}")
    module = import_module(f"bastion.report.{fmt}")
    if fmt == "sarif":
        return str(module.render(report, verdict, rules or {}))
    return str(module.render(report, verdict))
