"""What "not checked" means. Every gap a check can leave has a kind — the `code` of a Skip, plus
`check-error` for a CheckError and `incomplete` for a target whose analysis stopped — and this
table says how the gate treats each kind. policy.evaluate() reads it; docs/policy.md shows it
(tests/test_coverage.py keeps the two equal and produces every kind from a real input).

Producers (scanners, the code and dependency checks, signature verification) only say *what*
was not checked, with one of these kinds; whether that passes, blocks or leaves the verdict
undecided is decided here, and a policy may only make it stricter (`[coverage]` in
bastion.toml)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from bastion.records import Record


class Treatment(str, Enum):
    """What a gap does to the verdict, from the most lenient to the strictest."""

    IGNORED = "ignored"  # not a gap: content bastion does not check
    REPORTED = "reported"  # listed in every output; fails the gate only under --strict
    UNDECIDED = "undecided"  # the verdict cannot be "passed": exit 2 (exit 1 under --strict)
    BLOCKING = "blocking"  # fails the gate: exit 1

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    Treatment.IGNORED: 0,
    Treatment.REPORTED: 1,
    Treatment.UNDECIDED: 2,
    Treatment.BLOCKING: 3,
}


class Kind(Record):
    """One kind of gap: its code, its default treatment, what it means and where it comes
    from."""

    code: str
    treatment: Treatment
    meaning: str
    produced_by: str


OUT_OF_SCOPE = "out-of-scope"
UNSUPPORTED = "unsupported"
MISSING_EXTRA = "missing-extra"
FORMAT_NEEDS_EXTRA = "format-needs-extra"
NO_ADVISORY_DB = "no-advisory-db"
UNREADABLE = "unreadable"
LIMIT = "limit"
ENCRYPTED = "encrypted"
PARTIAL = "partial"
VERIFICATION_UNAVAILABLE = "verification-unavailable"
CHECK_ERROR = "check-error"  # every CheckError
INCOMPLETE = "incomplete"  # every TargetResult with incomplete=True

KINDS: dict[str, Kind] = {
    k.code: k
    for k in (
        Kind(
            code=OUT_OF_SCOPE,
            treatment=Treatment.IGNORED,
            meaning="not something bastion checks (text, images, unknown data without a model "
            "extension); never a gap, even under --strict",
            produced_by="every scanner",
        ),
        Kind(
            code=UNSUPPORTED,
            treatment=Treatment.REPORTED,
            meaning="recognised content no check analyses, or input a check cannot use (a "
            "requirement line it cannot read, a signature with no trusted key in the policy)",
            produced_by="scanners, dependency audit, signature verification",
        ),
        Kind(
            code=MISSING_EXTRA,
            treatment=Treatment.REPORTED,
            meaning="one check of a file that was otherwise analysed needs an optional package "
            "(secret detection without detect-secrets, signature verification without "
            "model-signing); the skip names the extra to install",
            produced_by="code checks, config values, signature verification",
        ),
        Kind(
            code=FORMAT_NEEDS_EXTRA,
            treatment=Treatment.UNDECIDED,
            meaning="the file's content could not be opened at all without an optional package "
            "(HDF5 without h5py, 7z without py7zr, lz4/zstd streams, notebooks without "
            "nbformat): nothing in it was checked; the skip names the extra",
            produced_by="archive, Keras/HDF5 and notebook readers",
        ),
        Kind(
            code=NO_ADVISORY_DB,
            treatment=Treatment.REPORTED,
            meaning="requirements were audited against bastion's bundled ML advisories only: no "
            "offline advisory database (advisory_db, --advisory-db) and no --online",
            produced_by="dependency audit",
        ),
        Kind(
            code=UNREADABLE,
            treatment=Treatment.REPORTED,
            meaning="source bastion cannot parse, so it was not analysed: a .py file or a notebook "
            "cell that is not valid Python (Python cannot run it either), a notebook that is "
            "not valid nbformat",
            produced_by="code checks",
        ),
        Kind(
            code=LIMIT,
            treatment=Treatment.REPORTED,
            meaning="a bound stopped one secondary check (e.g. more config values than are checked "
            "for credentials); a bound that stops a file's analysis is LIM001 plus "
            "`incomplete`",
            produced_by="config values",
        ),
        Kind(
            code=ENCRYPTED,
            treatment=Treatment.UNDECIDED,
            meaning="an encrypted archive or member: its content cannot be inspected (also "
            "reported as a finding)",
            produced_by="archive readers",
        ),
        Kind(
            code=PARTIAL,
            treatment=Treatment.UNDECIDED,
            meaning="an archive whose members could be listed but not all extracted: the "
            "members not extracted were not checked",
            produced_by="7z reader",
        ),
        Kind(
            code=VERIFICATION_UNAVAILABLE,
            treatment=Treatment.UNDECIDED,
            meaning="a signature could not be checked for a reason outside the signature: "
            "network or Sigstore/TUF trust-root errors, a model file that cannot be read. "
            "Distinct from a wrong key or changed content, which are SIG001 findings",
            produced_by="signature verification",
        ),
        Kind(
            code=CHECK_ERROR,
            treatment=Treatment.UNDECIDED,
            meaning="a check could not finish (a scanner error, a worker that died): every "
            "CheckError",
            produced_by="every check",
        ),
        Kind(
            code=INCOMPLETE,
            treatment=Treatment.UNDECIDED,
            meaning="a file whose analysis stopped before its end (a time, memory, size, depth or "
            "count bound: LIM001) or whose content could not be read: every target marked "
            "`incomplete`",
            produced_by="every check",
        ),
    )
}
# A kind this table does not know (a plugin's, a report from a newer bastion) is not trusted to
# be harmless.
UNKNOWN_TREATMENT = Treatment.UNDECIDED
TREATMENTS = tuple(t.value for t in Treatment)


def check_overrides(overrides: Mapping[str, str]) -> str | None:
    """The problem with a policy's `[coverage]` table, or None. A policy may make a kind
    stricter, never more lenient than its default, and never mark out-of-scope files as
    gaps."""
    for code, value in overrides.items():
        kind = KINDS.get(code)
        if kind is None:
            return f"unknown kind {code!r} (known: {', '.join(sorted(KINDS))})"
        if value not in TREATMENTS:
            return f"{code}: treatment must be one of {', '.join(TREATMENTS)}, not {value!r}"
        if code == OUT_OF_SCOPE and value != Treatment.IGNORED.value:
            return "out-of-scope content is never a gap"
        if Treatment(value).rank < kind.treatment.rank:
            return (
                f"{code}: {value!r} is more lenient than its default "
                f"{kind.treatment.value!r}; a policy can only make a kind stricter"
            )
    return None


def treatment(code: str, overrides: Mapping[str, str] | None = None) -> Treatment:
    """The policy's treatment of one kind, before --strict."""
    kind = KINDS.get(code)
    chosen = kind.treatment if kind is not None else UNKNOWN_TREATMENT
    override = (overrides or {}).get(code)
    if override is not None and Treatment(override).rank > chosen.rank:
        return Treatment(override)
    return chosen


def effective(code: str, overrides: Mapping[str, str] | None, strict: bool) -> Treatment:
    """The treatment the gate applies: --strict makes every gap that is not ignored fail."""
    chosen = treatment(code, overrides)
    if strict and chosen is not Treatment.IGNORED:
        return Treatment.BLOCKING
    return chosen


def markdown_table() -> str:
    """The table as it appears in docs/policy.md."""
    lines = [
        "| kind | default | under `--strict` | what it means | produced by |",
        "|---|---|---|---|---|",
    ]
    for kind in KINDS.values():
        strict = effective(kind.code, None, True).value
        lines.append(
            f"| `{kind.code}` | {kind.treatment.value} | {strict} | {kind.meaning} | "
            f"{kind.produced_by} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the table for docs/policy.md
    print(markdown_table(), end="")
