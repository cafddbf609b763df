"""A validating pattern anchored with `^` must end with `\\Z`, not `$`: Python's `$` also
matches before one trailing newline, so `re.match(r"^[a-z]+$", "acme\\n")` accepts the
newline (a tenant or an audit record's name carried one into the log before this test)."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "bastion"
ANCHORED = re.compile(r"""re\.compile\(\s*r?(["'])\^(?P<body>.*?)\1""")


def test_no_validating_pattern_ends_with_a_dollar() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in ANCHORED.finditer(line):
                body = match.group("body")
                if body.endswith("$") and not body.endswith("\\$"):
                    offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_guard_refuses_a_tenant_with_a_trailing_newline(tmp_path: Path) -> None:
    import pytest

    from bastion.errors import UsageError
    from bastion.guard.auth import KeyStore

    store = KeyStore(tmp_path / "keys.sqlite3")
    try:
        with pytest.raises(UsageError):
            store.create(scopes=("predict",), tenant="acme\n")
        store.create(scopes=("predict",), tenant="acme")
    finally:
        store.close()
