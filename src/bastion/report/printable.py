"""Untrusted text made safe to show. File names, pickle global names, evidence and messages come
from the artifacts bastion inspects: printed raw, a name could move the cursor, rewrite the
verdict line of a terminal or CI log, hide text (SGR 8), set the clipboard (OSC 52), reorder
what a reviewer reads (bidi overrides), or make a JUnit file ill-formed XML."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode bidi embedding/override/isolate marks.
_TERMINAL_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# What XML 1.0 cannot carry at all, plus the controls it can but terminals should not show.
_XML_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def terminal_safe(text: str) -> str:
    """One line of text with every control character shown as an escape (\\x1b, \\n, \\u202e)."""
    return _TERMINAL_UNSAFE.sub(_escape, text)


def xml_safe(text: str) -> str:
    """Text XML 1.0 can carry (newlines and tabs kept), other controls shown as escapes."""
    return _XML_UNSAFE.sub(_escape, text)
