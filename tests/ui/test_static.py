"""What the dashboard ships: the vendored chart library as fetched (checksums, licence), and
templates and scripts that keep the Content Security Policy meaningful (no inline script or
style, no handlers in markup, nothing marked safe, nothing from another origin)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

UI = Path(__file__).resolve().parents[2] / "src" / "bastion" / "ui"
VENDOR = UI / "static" / "vendor" / "uplot"
CHECKSUMS = {
    "uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
    "LICENSE": "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd",
}


def test_vendored_uplot_is_what_the_registry_served() -> None:
    notes = (VENDOR / "SOURCE.md").read_text()
    for name, digest in CHECKSUMS.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
        assert f"{digest}  {name}" in notes
    assert "MIT License" in (VENDOR / "LICENSE").read_text()
    assert sorted(p.name for p in VENDOR.iterdir()) == sorted([*CHECKSUMS, "SOURCE.md"])


def test_templates_keep_the_policy_meaningful() -> None:
    templates = sorted((UI / "templates").glob("*.html"))
    assert len(templates) >= 12
    for path in templates:
        text = path.read_text()
        for script in re.findall(r"<script\b[^>]*>", text):
            assert re.search(r'\bsrc="/static/', script), (path.name, script)
        assert "<style" not in text and " style=" not in text, path.name
        assert not re.search(r"\son[a-z]+\s*=", text), path.name  # no onclick= etc.
        assert "|safe" not in text and "Markup" not in text, path.name
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text), path.name
        assert "autoescape false" not in text, path.name


def test_own_script_writes_no_html() -> None:
    script = (UI / "static" / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "http://" not in script and "https://" not in script
    assert "url(http" not in (UI / "static" / "app.css").read_text()
