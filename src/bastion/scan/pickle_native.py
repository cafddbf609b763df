"""Reviewed callables that rebuild native (C++) data from a pickle's values without validating
it. They run no Python code of the pickle's choosing and touch no file or network, so they are
not code execution; but the lengths, offsets, indices and buffers they are handed become a C++
object as is, and the library's kernels trust that object. A crafted pickle built only of
allowlisted names can then read out of bounds (and crash the loader, or return heap memory as
values) when the data is first used. Such a callable is never listed as clean in
pickle_allowlist.tsv (tools/gen_allowlist.py refuses it); its calls are judged on their own rule
(PKL010, see below), and any other use is PKL003.

Each entry: (module, qualified name), exactly as the stream names it (a path through another
module's attributes is not the entry) -> (safe uses, why it is unsafe). Reviewed against pyarrow's
source (array.pxi, scalar.pxi) and demonstrated in tests/scan/test_pickle_arrow.py.

Every call is then checked the way the library's own full validation would check the object it
builds (`judge_calls`; the Arrow rules are in arrow_layout.py): when every call's arguments are
consistent the calls are as safe as building the same data through pyarrow's validated
constructors, and nothing is reported; an inconsistent call is reported high with the
inconsistency; a call bastion could not check fully (a value that is not a literal, a type it
does not read, a size bound) stays medium and says why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bastion.records import Record

if TYPE_CHECKING:
    from bastion.scan.arrow_layout import ArrayChecker

UNVALIDATED: dict[tuple[str, str], tuple[str, str]] = {
    ("pyarrow.lib", "_restore_array"): (
        "c",
        "rebuilds an Arrow array from pickled lengths, offsets and buffers with "
        "ArrayData::Make and no Validate: a crafted array reads out of bounds when used",
    ),
    ("pyarrow.lib", "DictionaryScalar._reconstruct"): (
        "c",
        "rebuilds a dictionary scalar without checking its index against the dictionary: a "
        "negative index reads out of bounds when the value is read",
    ),
}


def unvalidated(named: tuple[str, str], uses: str) -> str | None:
    """Why a name used this way rebuilds unvalidated native data (None: it does not, or the
    use is not one the entry covers, which is then judged like any unknown name)."""
    entry = UNVALIDATED.get(named)
    if entry is None or not uses or not all(use in entry[0] for use in uses):
        return None
    return entry[1]


RESTORE_ARRAY = ("pyarrow.lib", "_restore_array")
DICTIONARY_SCALAR = ("pyarrow.lib", "DictionaryScalar._reconstruct")


class Judgement(Record):
    """What the calls of one unvalidated reconstruction amount to: `invalid` (an inconsistent
    call; `detail` says which and how) or not fully checked (`detail` says why)."""

    invalid: bool
    detail: str


class CallJudge:
    """Checks the calls of the UNVALIDATED names in one pickle stream (one element budget)."""

    def __init__(self) -> None:
        self._checker: ArrayChecker | None = None

    @property
    def checker(self) -> ArrayChecker:
        if self._checker is None:
            from bastion.scan.arrow_layout import ArrayChecker  # only streams with Arrow data
            from bastion.scan.pickle_vm import call_of

            self._checker = ArrayChecker(call_of)
        return self._checker

    def values(self) -> tuple[list[tuple[str, bytes]], bool]:
        """The binary and string values of the consistent arrays checked so far that could
        carry a payload (for the payloads-as-data search), each with the array and row it came
        from, and whether more were left out than kept."""
        if self._checker is None:
            return [], False
        return self._checker.values, self._checker.values_truncated

    def judge(self, named: tuple[str, str], calls: Sequence[Any], dropped: int) -> Judgement | None:
        """None when every call of `named` is consistent (nothing to report). The first
        inconsistent call wins over calls that could not be checked."""
        from bastion.scan.arrow_layout import Invalid, Unchecked

        unchecked: str | None = None
        if dropped:
            unchecked = f"{dropped} more calls than bastion keeps were not checked"
        if not calls and not dropped:
            unchecked = "the calls' arguments were not kept"
        for number, call in enumerate(calls):
            try:
                self._one(named, call)
            except Invalid as exc:
                return Judgement(invalid=True, detail=_numbered(number, len(calls), str(exc)))
            except Unchecked as exc:
                if unchecked is None:
                    unchecked = _numbered(number, len(calls), str(exc))
        return None if unchecked is None else Judgement(invalid=False, detail=unchecked)

    def _one(self, named: tuple[str, str], call: Any) -> None:
        from bastion.scan.arrow_layout import Unchecked
        from bastion.scan.pickle_vm import call_of

        plain = call_of(call)
        if plain is None:
            raise Unchecked("called with keyword arguments, or its result changed afterwards")
        args = plain[1]
        if named == RESTORE_ARRAY:
            if len(args) != 1:
                raise Unchecked(f"called with {len(args)} arguments")
            self.checker.check(args[0])
        elif named == DICTIONARY_SCALAR:
            self._dictionary_scalar(args)
        else:
            raise Unchecked("no checker for this name")

    def _dictionary_scalar(self, args: tuple[Any, ...]) -> None:
        """DictionaryScalar._reconstruct(type, is_valid, index, dictionary) (scalar.pxi): the
        type, index and dictionary are checked for their types by pyarrow, the index's value
        is not. A valid scalar's index must lie within the dictionary."""
        from bastion.scan.arrow_layout import Invalid, Unchecked
        from bastion.scan.pickle_vm import call_of

        if len(args) != 4:
            raise Unchecked(f"called with {len(args)} arguments")
        kind, is_valid, index, dictionary = args
        if self.checker.types.read(kind).kind != "dictionary":
            raise Invalid("the type is not a dictionary type (the loader raises)")
        if is_valid is not None and type(is_valid) not in (bool, int):
            raise Unchecked("is_valid is not a literal")
        scalar = call_of(index)
        if scalar is not None and scalar[0] == ("pyarrow.lib", "scalar") and scalar[1]:
            index = scalar[1][0]  # scalar(value, type): the builder checks the value's range
        if index is not None and type(index) not in (bool, int):
            raise Unchecked("the index is not a literal integer")
        length = _dictionary_length(dictionary)
        if is_valid and index is None:
            raise Invalid("a valid scalar with a null index")
        if is_valid and not 0 <= index < length:
            raise Invalid(f"index {index} is outside the dictionary of {length} values")


def _dictionary_length(dictionary: Any) -> int:
    """Values in the scalar's dictionary: a list pyarrow.array() builds (and checks), or a
    pickled array (its own _restore_array call is checked as one)."""
    from bastion.scan.arrow_layout import Unchecked
    from bastion.scan.pickle_vm import call_of

    if isinstance(dictionary, (list, tuple)):
        return len(dictionary)
    call = call_of(dictionary)
    if call is not None and call[0] == RESTORE_ARRAY and len(call[1]) == 1:
        data = call[1][0]
        if isinstance(data, (tuple, list)) and len(data) == 7 and type(data[1]) is int:
            return data[1]
    raise Unchecked("the dictionary is not a literal list or a pickled array")


def _numbered(number: int, total: int, text: str) -> str:
    return f"call {number + 1} of {total}: {text}" if total > 1 else text
