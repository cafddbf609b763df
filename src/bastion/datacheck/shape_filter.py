"""A vectorised test of whether any of the number detectors (`detectors._numbers`: cards, IBANs,
national ids, phone numbers) can match a text, so the personal-data check keeps cells that no
such detector can match out of Python.

The pre-filter of the "digits" group (`detectors.GROUP_PATTERNS`) only asks for seven digits
close together; an identifier column of values such as "C-0012345" passes it on every row, and
every one of those cells then costs a Python call that runs fourteen regular expressions to
find nothing. This module derives, from each detector's own Python pattern, an RE2 pattern that
matches every text the Python pattern matches somewhere (a superset, never fewer), and pyarrow
runs their union over a whole column at once:

- a negative lookbehind of one character class at the start of the pattern, `(?<![C])`, becomes
  `(?:^|[^C'])`, where C' holds only characters that C certainly holds (ASCII \\w, \\d, \\s), so
  the translation can only accept more;
- every other lookaround is dropped (accepts more);
- a back-reference becomes the group it refers to (accepts more);
- `\\d`, `\\s` and `\\w` outside a lookbehind become their ASCII members plus every non-ASCII
  character: Python's are Unicode-aware, RE2's ASCII-only, and the Unicode tables of the two
  engines need not agree, so any non-ASCII character is let through (accepts more).

Anything the translation does not understand (anchors, word boundaries, inline flags,
positive lookarounds) raises ValueError, so a detector pattern that changes shape fails the
tests instead of being filtered wrongly. `tests/datacheck/test_pii_prefilter.py` checks that
the union covers every pattern `_numbers` runs, that no text a detector matches is filtered
out, and that the check's findings are the same with and without the filter."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

# the compiled patterns detectors._numbers runs (a test reads the list from its source)
NUMBER_PATTERNS = (
    "_IBAN",
    "_CARD",
    "_SSN",
    "_NINE",
    "_BSN_DOTTED",
    "_NINO",
    "_ELEVEN",
    "_PESEL",
    "_NIR",
    "_DNI",
    "_NIE",
    "_PERSONNUMMER",
    "_AADHAAR",
    "_PHONE",
)

_NON_ASCII = r"\x{80}-\x{10FFFF}"
# wide: what Python's class may match (ASCII members, and any non-ASCII character)
_WIDE = {
    "d": "0-9" + _NON_ASCII,
    "s": r"\t\n\x0b\f\r\x1c-\x1f " + _NON_ASCII,
    "w": "A-Za-z0-9_" + _NON_ASCII,
}
# narrow: what Python's class certainly matches (its ASCII members)
_NARROW = {"d": "0-9", "s": r"\t\n\x0b\f\r\x1c-\x1f ", "w": "A-Za-z0-9_"}
# escapes that mean the same literal character in both engines
_LITERAL_ESCAPES = set(".-/()+*?[]{}|^$\\ #&~")


def superset_pattern(pattern: re.Pattern[str]) -> str:
    """An RE2 pattern that matches (somewhere) every text `pattern` matches (somewhere)."""
    if pattern.flags & ~(re.UNICODE | re.IGNORECASE):
        raise ValueError(f"flags {pattern.flags!r} are not translated")
    translated = _Translator(pattern.pattern).translate()
    return f"(?i:{translated})" if pattern.flags & re.IGNORECASE else translated


@functools.cache
def numbers_pattern() -> str:
    """The union of the superset patterns of every number detector."""
    from bastion.personal import detectors

    return "|".join(f"(?:{superset_pattern(getattr(detectors, name))})" for name in NUMBER_PATTERNS)


class _Translator:
    def __init__(self, source: str) -> None:
        self.source = source
        self.groups: dict[int, str] = {}  # capturing group number -> its translation
        self.next_group = 1

    def translate(self) -> str:
        out: list[str] = []
        position = 0
        # leading negative lookbehinds of one character class: consumed as "start or a
        # character outside the class" (only at the very start, where consuming is harmless),
        # and only when the pattern has no top-level alternative
        if not _top_level_alternation(self.source):
            first = True
            while self.source.startswith("(?<!", position):
                end = _group_end(self.source, position)
                body = self.source[position + 4 : end]
                if first and body.startswith("[") and _class_end(body, 0) == len(body) - 1:
                    inner = body[1:-1]
                    if not inner.startswith("^"):
                        out.append(f"(?:^|[^{_class_body(inner, narrow=True)}])")
                first = False
                position = end + 1
        text, position = self._sequence(position, closing=False)
        return "".join(out) + text

    def _sequence(self, position: int, closing: bool) -> tuple[str, int]:
        source = self.source
        out: list[str] = []
        while position < len(source):
            char = source[position]
            if char == ")":
                if not closing:
                    raise ValueError(f"unbalanced ) at {position}")
                return "".join(out), position
            if char == "(":
                text, position = self._group(position)
                out.append(text)
                continue
            if char == "[":
                end = _class_end(source, position)
                body = source[position + 1 : end]
                # a negated class matches more when what it excludes is narrower
                out.append(f"[{_class_body(body, narrow=body.startswith('^'))}]")
                position = end + 1
                continue
            if char == "\\":
                text, position = self._escape(position)
                out.append(text)
                continue
            if char in "^$":
                raise ValueError(f"anchor {char!r} at {position} is not translated")
            out.append(char)
            position += 1
        if closing:
            raise ValueError("unbalanced (")
        return "".join(out), position

    def _group(self, position: int) -> tuple[str, int]:
        source = self.source
        if source.startswith(("(?<!", "(?!"), position):
            return "", _group_end(source, position) + 1  # dropped: accepts more
        if source.startswith("(?:", position):
            inner, end = self._sequence(position + 3, closing=True)
            return f"(?:{inner})", end + 1
        if source.startswith("(?", position):
            raise ValueError(f"group {source[position : position + 4]!r} is not translated")
        number = self.next_group
        self.next_group += 1
        inner, end = self._sequence(position + 1, closing=True)
        self.groups[number] = inner
        return f"({inner})", end + 1

    def _escape(self, position: int) -> tuple[str, int]:
        char = self.source[position + 1 : position + 2]
        if char in _WIDE:
            return f"[{_WIDE[char]}]", position + 2
        if char.isdigit() and char != "0":
            group = self.groups.get(int(char))
            if group is None:
                raise ValueError(f"back-reference \\{char} before its group")
            return f"(?:{group})", position + 2
        if char in _LITERAL_ESCAPES:
            return "\\" + char, position + 2
        raise ValueError(f"escape \\{char} is not translated")


def _class_body(body: str, narrow: bool) -> str:
    """The inside of a character class (without the brackets) for RE2: \\d, \\s, \\w as their
    wide or narrow members, literal escapes kept."""
    table = _NARROW if narrow else _WIDE
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            escaped = body[index + 1 : index + 2]
            if escaped in table:
                out.append(table[escaped])
                if body[index + 2 : index + 3] == "-" and index + 3 < len(body):
                    out.append("\\")  # a - after a shorthand is literal in Python, not a range
            elif escaped in _LITERAL_ESCAPES:
                out.append("\\" + escaped)
            else:
                raise ValueError(f"escape \\{escaped} in a class is not translated")
            index += 2
            continue
        if char == "[":
            raise ValueError("nested class is not translated")
        out.append(char)
        index += 1
    return "".join(out)


def _class_end(source: str, start: int) -> int:
    """The index of the ] closing the class opened at `start`."""
    index = start + 1
    if source[index : index + 1] == "^":
        index += 1
    if source[index : index + 1] == "]":
        index += 1  # a ] first in the class is literal
    while index < len(source):
        if source[index] == "\\":
            index += 2
            continue
        if source[index] == "]":
            return index
        index += 1
    raise ValueError("unterminated character class")


def _outside_classes(source: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """(index, character) of a pattern from `start`, skipping escapes and character classes
    (where parentheses and bars are literal)."""
    index = start
    while index < len(source):
        char = source[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            index = _class_end(source, index) + 1
            continue
        yield index, char
        index += 1


def _group_end(source: str, start: int) -> int:
    """The index of the ) closing the group opened at `start`."""
    depth = 0
    for index, char in _outside_classes(source, start):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError("unbalanced (")


def _top_level_alternation(source: str) -> bool:
    depth = 0
    for _index, char in _outside_classes(source):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
    return False
