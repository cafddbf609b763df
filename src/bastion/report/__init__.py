"""Report renderers. Every one takes the same (Report, Verdict) and returns text; each is
imported only when asked for (Jinja2 and the SARIF rule table cost start-up time)."""

from __future__ import annotations

from importlib import import_module

from bastion.findings import Report
from bastion.policy import Verdict

FORMATS = ("text", "json", "sarif", "html", "junit")


def render(report: Report, verdict: Verdict, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}")
    module = import_module(f"bastion.report.{fmt}")
    return str(module.render(report, verdict))
