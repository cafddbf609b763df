"""Reading what a project depends on: requirement files (pins, ranges, -r includes), lock files
(pylock.toml, poetry.lock, uv.lock) and installed environments. Names are PEP 503-normalised."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bastion.errors import InputError
from bastion.records import Record

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_INCLUDE_DEPTH = 8


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Dependency(Record):
    name: str  # normalised
    version: str | None  # exact version when pinned or locked
    specifier: str  # as written, e.g. ">=2.0,<3"
    source: str  # file (or "environment")
    line: int | None = None


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
        return path.read_text("utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc


def read_requirements(
    path: Path, display: str | None = None, depth: int = 0, root: Path | None = None
) -> tuple[list[Dependency], list[str]]:
    """(dependencies, problems) of a pip requirements file, parsed by pip's own grammar
    (pip-requirements-parser): continuation lines, `--hash` options, `-rfile` and markers read
    the way pip reads them. Includes (-r/-c) are followed here, bounded in depth and size, and
    only inside the first file's folder: a hostile `-r /etc/shadow` is not read (its lines
    would end up in the report)."""
    from pip_requirements_parser import RequirementsFile

    display = display or str(path)
    root = root or path.parent.resolve()
    _read(path)  # size and readability first: the parser reads the whole file
    try:
        parsed = RequirementsFile.from_file(str(path), include_nested=False)
    except Exception as exc:  # the vendored pip code raises its own exception types
        return [], [f"{display}: cannot parse: {exc}"[:300]]
    deps: list[Dependency] = []
    problems: list[str] = []
    for requirement in parsed.requirements:
        number = requirement.line_number
        if requirement.link is not None or requirement.is_editable or not requirement.name:
            problems.append(
                f"{display}:{number}: not checked (URL, path or editable "
                f"requirement): {requirement.name or requirement.link}"
            )
            continue
        specifier = requirement.specifier  # None when the line names no version
        pinned = next(
            (
                s.version
                for s in specifier or ()
                if s.operator in ("==", "===") and "*" not in s.version
            ),
            None,
        )
        deps.append(
            Dependency(
                name=normalise(requirement.name),
                version=pinned,
                specifier=str(specifier) if specifier else "",
                source=display,
                line=number,
            )
        )
    for invalid in parsed.invalid_lines:
        problems.append(
            f"{display}:{invalid.requirement_line.line_number}: not checked: "
            f"{invalid.error_message}"[:300]
        )
    for option in parsed.options:
        for include in [
            *option.options.get("requirements", []),
            *option.options.get("constraints", []),
        ]:
            more, issues = _include(
                path, include, display, option.requirement_line.line_number, depth, root
            )
            deps += more
            problems += issues
    return deps, problems


def _include(
    path: Path, include: str, display: str, number: int, depth: int, root: Path
) -> tuple[list[Dependency], list[str]]:
    target = (path.parent / include).resolve()
    where = f"{display}:{number}"
    if "://" in include:
        return [], [f"{where}: include from a URL not read: {include}"]
    if depth >= MAX_INCLUDE_DEPTH:
        return [], [f"{where}: includes nested too deeply"]
    if target != root and root not in target.parents:
        return [], [f"{where}: include outside the project folder not read: {include}"]
    if not target.is_file():
        return [], [f"{where}: included file not found: {include}"]
    return read_requirements(target, str(path.parent / include), depth + 1, root)


def read_lock(path: Path, display: str | None = None) -> list[Dependency]:
    """pylock.toml ([[packages]]), poetry.lock and uv.lock ([[package]])."""
    display = display or str(path)
    try:
        data = tomllib.loads(_read(path))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{display} is not valid TOML: {exc}") from exc
    entries = data.get("packages") or data.get("package") or []
    deps = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            version = entry.get("version")
            deps.append(
                Dependency(
                    name=normalise(entry["name"]),
                    version=version if isinstance(version, str) else None,
                    specifier=f"=={version}" if isinstance(version, str) else "",
                    source=display,
                )
            )
    return deps


def read_environment() -> list[Dependency]:
    """The distributions installed in the running Python environment."""
    from importlib.metadata import distributions

    seen: dict[str, Dependency] = {}
    for dist in distributions():
        name = dist.name  # the "Name" metadata field
        if name:
            seen[normalise(name)] = Dependency(
                name=normalise(name),
                version=dist.version,
                specifier=f"=={dist.version}",
                source="environment",
            )
    return sorted(seen.values(), key=lambda d: d.name)


LOCK_FILES = frozenset({"poetry.lock", "uv.lock", "pylock.toml"})


def is_lock_file(name: str) -> bool:
    lowered = name.lower()
    return lowered in LOCK_FILES or re.fullmatch(r"pylock\..+\.toml", lowered) is not None


def is_dependency_file(name: str) -> bool:
    """The files a project audit reads: requirements*.txt and the lock files above."""
    lowered = name.lower()
    return (lowered.startswith("requirements") and lowered.endswith(".txt")) or is_lock_file(
        lowered
    )


def read_any(path: Path, display: str | None = None) -> tuple[list[Dependency], list[str]]:
    if is_lock_file(path.name) or path.suffix.lower() == ".lock":
        return read_lock(path, display), []
    return read_requirements(path, display)
