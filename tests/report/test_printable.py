"""Hostile names and strings from the inspected content cannot drive a terminal, fake a verdict
line or break a JUnit file (white-box attack A1-05)."""

from __future__ import annotations

import os
import pickle
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bastion.cli.main import main
from bastion.report.printable import terminal_safe, xml_safe

HOSTILE = (
    "\x1b[2K\r\x1b[1A\x1b[2K\rfindings: none\nverdict: PASSED\n\x1b]52;c;ZWNobw==\x07"
    "\u202eexe.\x1b[8m\x85\x00"
)


def test_terminal_safe_leaves_no_control_characters() -> None:
    shown = terminal_safe(HOSTILE)
    assert not any(
        ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0x202A <= ord(c) <= 0x202E for c in shown
    )
    assert "\\x1b[2K" in shown and "\\n" in shown and "\\u202e" in shown
    assert terminal_safe("models/résumé.pkl") == "models/résumé.pkl"


def test_xml_safe_is_well_formed() -> None:
    element = ET.Element("testcase", name=xml_safe(HOSTILE))
    element.text = xml_safe(HOSTILE + "\ud800\uffff")
    parsed = ET.fromstring(ET.tostring(element, "unicode"))
    assert "\\x1b" in (parsed.text or "") and "\n" in (parsed.text or "")
    with pytest.raises(ET.ParseError):  # what the raw name did to the JUnit file
        raw = ET.Element("testcase", name=HOSTILE)
        ET.fromstring(ET.tostring(raw, "unicode"))


@pytest.mark.parametrize("fmt", ["text", "junit"])
def test_a_hostile_file_name_cannot_fake_the_verdict(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    name = HOSTILE.replace("\x00", "").replace("/", "") + ".pkl"
    (folder / name).write_bytes(b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echo\x85R.")
    (folder / "ok.pkl").write_bytes(pickle.dumps([1]))
    assert main(["scan", str(folder), "--no-store", "-f", fmt]) == 1
    captured = capsys.readouterr()
    for stream in (captured.out, captured.err):
        assert "\x1b" not in stream and "\u202e" not in stream and "\x07" not in stream
    if fmt == "text":
        verdicts = [line for line in captured.out.splitlines() if line.startswith("verdict:")]
        assert verdicts == ["verdict: FAILED"]
    else:
        suite = ET.fromstring(captured.out.split("\n", 1)[1])
        assert suite.get("failures") == "1"


@pytest.mark.parametrize("raw", [b"\xff\xfe.pkl", b"\xed\xa0\x80.pkl"])
@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "junit", "html"])
def test_a_file_name_that_is_not_utf8_does_not_break_any_report(
    tmp_path: Path, raw: bytes, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """White-box attack A1-07: one such name made every report format an internal error."""
    folder = tmp_path / "m"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), raw), "wb") as handle:
        handle.write(b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echo\x85R.")
    (folder / "ok.pkl").write_bytes(pickle.dumps([1]))
    store = tmp_path / "history.sqlite3"
    assert main(["scan", str(folder), "--store", str(store), "-f", fmt]) == 1
    out = capsys.readouterr().out
    assert "\\x" in out or "%5Cx" in out  # the odd bytes are shown as escapes (SARIF: in a URI)
