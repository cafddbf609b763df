"""Regenerate tests/data/secrets/detect_secrets_lines.json: every line of text in
detect-secrets' own test suite (the string values its plugin tests are parametrised with and
the constants they are built from) and its test_data files, for tests/test_secrets_prefilter.py.

    git clone https://github.com/Yelp/detect-secrets /tmp/detect-secrets
    python tools/gen_secrets_corpus.py /tmp/detect-secrets

It imports the test modules of that checkout (their parametrize lists are built at import);
run it on a checkout you trust. Lines over 2,000 characters are left out (detect-secrets' long-
line performance cases), and so are duplicates."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "secrets"
MAX_LINE = 2_000


def _strings(value: Any, out: list[str], depth: int = 0) -> None:
    if depth > 6:
        return
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, bytes):
        out.append(value.decode("utf-8", "replace"))
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _strings(item, out, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, out, depth + 1)


def _marks(obj: Any, out: list[str]) -> None:
    marks = getattr(obj, "pytestmark", None) if not isinstance(obj, types.ModuleType) else None
    for mark in marks if isinstance(marks, list) else ():
        _strings(list(mark.args), out)


class _Stub(types.ModuleType):
    """A module the tests import only to mock HTTP calls (`responses`): any attribute is a
    no-op that also works as a decorator."""

    def __getattr__(self, name: str) -> Any:
        def anything(*args: Any, **kwargs: Any) -> Any:
            return args[0] if len(args) == 1 and callable(args[0]) and not kwargs else None

        return anything


def main() -> int:
    repo = Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(repo))
    for name in ("responses",):
        if importlib.util.find_spec(name) is None:
            sys.modules[name] = _Stub(name)
    found: list[str] = []
    for path in sorted((repo / "tests" / "plugins").glob("*_test.py")):
        spec = importlib.util.spec_from_file_location(f"_ds_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # a module that needs what is not installed: its constants
            print(f"skipped {path.name}: {exc}", file=sys.stderr)
            continue
        for name, value in vars(module).items():
            if name.isupper():
                _strings(value, found)
            _marks(value, found)
            for member in vars(value).values() if isinstance(value, type) else ():
                _marks(member, found)
    for path in sorted((repo / "test_data").rglob("*")):
        if path.is_file() and "performance" not in path.parts:
            found.append(path.read_text("utf-8", "replace"))
    lines: dict[str, None] = {}
    for text in found:
        for line in text.splitlines():
            if line.strip() and len(line) <= MAX_LINE:
                lines[line] = None
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    OUT.mkdir(parents=True, exist_ok=True)
    document = {
        "source": "https://github.com/Yelp/detect-secrets (tests/plugins/*_test.py, test_data/)",
        "commit": commit,
        "license": "Apache-2.0, Copyright (c) 2018 Yelp, Inc.",
        "lines": list(lines),
    }
    (OUT / "detect_secrets_lines.json").write_text(json.dumps(document, indent=0) + "\n")
    print(f"{len(lines)} lines", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
