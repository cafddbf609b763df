"""The bulk pre-filter of the payloads-as-data search: which of many values (an object column's
strings, an Arrow string column) could carry a serialized payload at all, decided for all of them
at once instead of one Python call per value.

embedded.payloads_in finds a payload in a value only through one of two doors, and this module
looks for the sign of each over a whole chunk of values joined by a separator, with compiled
regular expressions (C loops over the buffer; Python work only per hit):

- raw: a payload, compressed stream or archive is identified only in a value holding a byte
  outside one line of printable text (embedded.identify_whole rejects anything else);
- text: hex, base64 or base64url is decoded only when the value's first 4,096 bytes are all of
  the base64 class (letters, digits, `+/=_-`, whitespace), at least 16 of them, and the first
  byte the head decodes to could start a payload (a pickle opcode, a format's magic, a zlib
  header...). That byte is fixed by the first two hex digits, or by the first two base64
  characters (whitespace and `=` skipped, a `0x` prefix dropped), as embedded._head_of and the
  decoders read them.

Every value that could pass either door is a candidate (more than pass: a candidate is only a
value the exact per-value analysis then runs on; it is never reported by itself). A hit is
mapped back to its value by the offsets of the joined chunk, so a candidate is always the value
that holds the sign: the separator `|` is printable (no raw hit) and outside the base64 class (no
text run crosses it), and a value holding a `|` itself at most becomes a candidate it need not
be. Chunks are joined at most CHUNK_SIZE bytes (or characters) at a time; a longer value is a
candidate on its own without being copied."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from itertools import accumulate
from typing import Any

from bastion.scan.embedded import MIN_PAYLOAD, PAYLOAD_START_BYTES

CHUNK_SIZE = 1 << 24  # bytes or characters of values joined at once (64 MiB at most as text)
CHUNK_VALUES = 1 << 20  # values joined at once
TEXT_HEAD = 4096  # the head of a value the text decoders' pattern must match (embedded.py)
MIN_TEXT = 16  # the shortest value the base64 pattern accepts (embedded._B64_RE)

_SEP = "|"
_WS = " \\t\\n\\r\\f\\v"  # what `\s` matches in a bytes pattern (embedded.py's patterns)
_B64_CLASS = "A-Za-z0-9+/=_\\-" + _WS
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_HEX = "0123456789abcdef"


def _char_class(chars: Iterable[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(set(chars))) + "]"


def _first_byte_pattern(starts: frozenset[int]) -> str:
    """A value head whose hex or base64 decoding starts with a byte in `starts`: the optional
    whitespace and `0x` prefix _head_of drops, `=` the lenient base64 decoder skips, then the
    first two digits (hex) or characters (base64, base64url: `-` is `+`, `_` is `/`)."""
    values = {c: i for i, c in enumerate(_ALPHABET)} | {"-": 62, "_": 63}
    # base64: the first byte is (first << 2) | (second >> 4); group first characters by the
    # quarters of the alphabet the second may come from
    by_quarters: dict[frozenset[int], list[str]] = {}
    for char, value in values.items():
        quarters = frozenset(q for q in range(4) if ((value << 2) | q) & 0xFF in starts)
        if quarters:
            by_quarters.setdefault(quarters, []).append(char)
    branches: list[str] = []
    leading: set[str] = set()  # the characters a matching head can start its digits with
    for quarters, firsts in sorted(by_quarters.items(), key=lambda item: sorted(item[1])):
        seconds = [c for c, v in values.items() if v >> 4 in quarters]
        branches.append(f"{_char_class(firsts)}[={_WS}]*{_char_class(seconds)}")
        leading.update(firsts)
    # hex: high digit, then low digit (either case)
    by_lows: dict[frozenset[str], list[str]] = {}
    for high in range(16):
        lows = frozenset(
            case for low in range(16) if high << 4 | low in starts for case in _cases(_HEX[low])
        )
        if lows:
            by_lows.setdefault(lows, []).extend(_cases(_HEX[high]))
    for lows, highs in sorted(by_lows.items(), key=lambda item: sorted(item[1])):
        branches.append(f"{_char_class(highs)}[={_WS}]*{_char_class(lows)}")
        leading.update(highs)
    # most values fail on their first character: test it before the branches
    quick = "(?=[" + _WS + "".join(re.escape(c) for c in sorted(leading | {"0", "="})) + "])"
    prefix = f"[{_WS}]*(?:0[{_WS}]*[xX])?[={_WS}]*"
    return quick + prefix + "(?:" + "|".join(branches) + ")"


def _cases(digit: str) -> tuple[str, ...]:
    return (digit,) if digit.isdigit() else (digit, digit.upper())


class _Patterns:
    """The two searches over a joined chunk, compiled for bytes or for str."""

    def __init__(self, as_bytes: bool) -> None:
        sep = re.escape(_SEP)
        # a run of the base64 class from the value's start: TEXT_HEAD long, or the whole value
        text_run = (
            f"(?=[{_B64_CLASS}]{{{TEXT_HEAD}}}|[{_B64_CLASS}]{{{MIN_TEXT},{TEXT_HEAD - 1}}}+{sep})"
        )
        starts = PAYLOAD_START_BYTES | {ord("t")}  # "tree": LightGBM's text model
        text = f"{sep}(?={_first_byte_pattern(frozenset(starts))}){text_run}"
        raw = "[^\\t\\x20-\\x7e]"  # outside one line of printable ASCII
        self.text: re.Pattern[Any] = re.compile(text.encode("ascii") if as_bytes else text)
        self.raw: re.Pattern[Any] = re.compile(raw.encode("ascii") if as_bytes else raw)


@cache
def _patterns(as_bytes: bool) -> _Patterns:
    return _Patterns(as_bytes)


def payload_candidates(values: Sequence[str | bytes]) -> list[int]:
    """Indices, in order, of the values that could carry a payload: every value for which
    embedded.payloads_in would find one, and some for which it would not (the caller runs the
    exact analysis on these only). str and bytes values may be mixed."""
    if len(set(map(type, values))) <= 1:
        return _candidates(values)
    # each kind joined on its own (a str is searched as text, bytes as bytes), merged in order
    out: list[int] = []
    for is_text in (True, False):
        positions = [i for i, v in enumerate(values) if isinstance(v, str) is is_text]
        out.extend(positions[i] for i in _candidates([values[p] for p in positions]))
    return sorted(out)


def _candidates(values: Sequence[Any]) -> list[int]:
    """payload_candidates for values of one kind (all str or all bytes), joined CHUNK_SIZE at
    a time."""
    count = len(values)
    if not count:
        return []
    lengths = list(map(len, values))
    out: set[int] = set()
    if max(lengths) > CHUNK_SIZE:  # a candidate on its own, not copied into a chunk
        values = list(values)
        empty = values[0][:0]
        for index, length in enumerate(lengths):
            if length > CHUNK_SIZE:
                out.add(index)
                values[index], lengths[index] = empty, 0
    # where each value starts in all values joined, after the leading separator (and where
    # one more would: starts[count])
    starts = list(accumulate((length + 1 for length in lengths), initial=1))
    low = 0
    while low < count:
        end = min(count, low + CHUNK_VALUES)
        high = bisect_right(starts, starts[low] + CHUNK_SIZE, low + 1, end + 1) - 1
        high = max(high, low + 1)
        out.update(_search(values, lengths, starts, low, high))
        low = high
    return sorted(out)


def _search(
    values: Sequence[Any], lengths: list[int], starts: list[int], low: int, high: int
) -> Iterator[int]:
    """The candidates among values[low:high], joined into one buffer."""
    chunk = values[low:high]
    buffer: Any
    if isinstance(chunk[0], str):
        joined = _SEP + _SEP.join(chunk) + _SEP
        try:  # the same positions as bytes when every character is one byte
            buffer = joined.encode("latin-1")
        except UnicodeEncodeError:
            buffer = joined
    else:
        sep = _SEP.encode()
        buffer = sep + sep.join(chunk) + sep
    patterns = _patterns(isinstance(buffer, bytes))
    shift = starts[low] - 1  # buffer position -> position in all values joined

    def owner(position: int) -> int:
        return bisect_right(starts, position + shift, low, high) - 1

    # text: a match sits on the separator before the value it starts
    for match in patterns.text.finditer(buffer):
        yield owner(match.start() + 1)
    # raw: the first character outside printable text in a value, then on to the next value
    found = patterns.raw.search(buffer)
    while found is not None:
        index = owner(found.start())
        if lengths[index] >= MIN_PAYLOAD:
            yield index
        found = patterns.raw.search(buffer, starts[index + 1] - shift)
