"""Self-contained HTML report (no external assets; every value escaped by Jinja2)."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from bastion.findings import Report, Severity
from bastion.policy import Status, Verdict
from bastion.report.rows import HTML_ROWS, sample_rows
from bastion.rules import taxonomy

_ENV = Environment(
    loader=PackageLoader("bastion.report", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

_EXPLAIN = {
    Status.PASSED: "No finding reaches the gate's threshold. The artifacts checked here showed "
    "nothing that the policy treats as unsafe.",
    Status.FAILED: "Do not load or deploy these artifacts until the findings below are fixed "
    "or deliberately waived.",
    Status.UNDECIDED: "bastion could not finish every check, so it cannot say the artifacts are "
    "safe. See the errors and gaps below.",
}


def render(report: Report, verdict: Verdict) -> str:
    failing = set(verdict.failing)
    accepted = set(verdict.waived) | set(verdict.baselined)
    groups = []
    for severity in sorted(Severity, key=lambda s: -s.rank):
        items = [f for f in report.findings if f.severity == severity]
        if items:
            groups.append(
                (severity.value, sorted(items, key=lambda f: (f.location.path, f.rule_id)))
            )
    charts: dict[str, Markup] = {}
    probe = report.metadata.get("probe") if report.command == "probe" else None
    if isinstance(probe, dict):
        from bastion.report.svg import probe_charts

        # the SVG is built from numbers and escaped labels (report/svg.py)
        charts = {name: Markup(svg) for name, svg in probe_charts(probe).items() if svg}
    template = _ENV.get_template("report.html.j2")
    return template.render(
        report=report,
        verdict=verdict,
        groups=groups,
        failing=failing,
        accepted=accepted,
        explanation=_EXPLAIN[verdict.status],
        counts=report.severity_counts(),
        gaps=report.gaps,
        out_of_scope=len(report.skips) - len(report.gaps),
        frameworks=taxonomy()["frameworks"],
        probe=probe if isinstance(probe, dict) else None,
        charts=charts,
        sample_rows=sample_rows,
        row_limit=HTML_ROWS,
    )
