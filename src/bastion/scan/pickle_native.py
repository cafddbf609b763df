"""Reviewed callables that rebuild native (C++) data from a pickle's values without validating
it. They run no Python code of the pickle's choosing and touch no file or network, so they are
not code execution; but the lengths, offsets, indices and buffers they are handed become a C++
object as is, and the library's kernels trust that object. A crafted pickle built only of
allowlisted names can then read out of bounds (and crash the loader, or return heap memory as
values) when the data is first used. Such a callable is never listed as clean in
pickle_allowlist.tsv (tools/gen_allowlist.py refuses it); called, it is reported on its own rule
(PKL010) at medium severity with the reason below, and any other use is PKL003.

Each entry: (module, qualified name), exactly as the stream names it (a path through another
module's attributes is not the entry) -> (safe uses, why it is unsafe). Reviewed against pyarrow's
source (array.pxi, scalar.pxi) and demonstrated in tests/scan/test_pickle_arrow.py."""

from __future__ import annotations

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
