"""Report renderers. Every one takes the same (Report, Verdict) and returns text."""

from __future__ import annotations

from collections.abc import Callable

from bastion.findings import Report
from bastion.policy import Verdict
from bastion.report import html, json, junit, sarif, text

Renderer = Callable[[Report, Verdict], str]

RENDERERS: dict[str, Renderer] = {
    "text": text.render,
    "json": json.render,
    "sarif": sarif.render,
    "html": html.render,
    "junit": junit.render,
}
FORMATS = tuple(RENDERERS)


def render(report: Report, verdict: Verdict, fmt: str) -> str:
    return RENDERERS[fmt](report, verdict)
