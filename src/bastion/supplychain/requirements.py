"""Reading what a project depends on: requirement files (pins, ranges, -r includes), lock files
(pylock.toml, poetry.lock, uv.lock) and installed environments. Names are PEP 503-normalised."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import NamedTuple

from bastion.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_INCLUDE_DEPTH = 8


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Dependency(NamedTuple):
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


def read_requirements(path: Path, display: str | None = None,
                      depth: int = 0) -> tuple[list[Dependency], list[str]]:
    """(dependencies, problems) of a pip requirements file."""
    from packaging.requirements import InvalidRequirement, Requirement

    display = display or str(path)
    deps: list[Dependency] = []
    problems: list[str] = []
    for number, raw in enumerate(_read(path).splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ", "-c ", "--constraint ")):
            include = path.parent / line.split(None, 1)[1].strip()
            if depth >= MAX_INCLUDE_DEPTH:
                problems.append(f"{display}:{number}: includes nested too deeply")
                continue
            more, issues = read_requirements(include, str(include), depth + 1)
            deps += more
            problems += issues
            continue
        if line.startswith("-") or "://" in line or line.startswith((".", "/")):
            problems.append(f"{display}:{number}: not checked (option, URL or path): {line}")
            continue
        line = line.split(";", 1)[0].strip() if ";" in line else line
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            problems.append(f"{display}:{number}: invalid requirement: {exc}")
            continue
        specs = list(requirement.specifier)
        pinned = next((s.version for s in specs if s.operator in ("==", "===") and
                       "*" not in s.version), None)
        deps.append(Dependency(normalise(requirement.name), pinned, str(requirement.specifier),
                               display, number))
    return deps, problems


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
            deps.append(Dependency(normalise(entry["name"]),
                                   version if isinstance(version, str) else None,
                                   f"=={version}" if isinstance(version, str) else "",
                                   display))
    return deps


def read_environment() -> list[Dependency]:
    """The distributions installed in the running Python environment."""
    from importlib.metadata import distributions

    seen: dict[str, Dependency] = {}
    for dist in distributions():
        name = dist.name  # the "Name" metadata field
        if name:
            seen[normalise(name)] = Dependency(normalise(name), dist.version,
                                               f"=={dist.version}", "environment")
    return sorted(seen.values(), key=lambda d: d.name)


LOCK_FILES = frozenset({"poetry.lock", "uv.lock", "pylock.toml"})


def is_lock_file(name: str) -> bool:
    lowered = name.lower()
    return lowered in LOCK_FILES or re.fullmatch(r"pylock\..+\.toml", lowered) is not None


def is_dependency_file(name: str) -> bool:
    """The files a project audit reads: requirements*.txt and the lock files above."""
    lowered = name.lower()
    return (lowered.startswith("requirements") and lowered.endswith(".txt")) or \
        is_lock_file(lowered)


def read_any(path: Path, display: str | None = None) -> tuple[list[Dependency], list[str]]:
    if is_lock_file(path.name) or path.suffix.lower() == ".lock":
        return read_lock(path, display), []
    return read_requirements(path, display)
