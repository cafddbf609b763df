"""The list of practitioner builders and what a build produced."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Writer = Callable[[Path], None]


@dataclass(frozen=True)
class Spec:
    name: str  # path under the corpus root: a file, or a folder for save_pretrained-style writers
    library: str  # the library whose writer produces it (for reports)
    what: str  # how a practitioner gets this file
    needs: tuple[str, ...]  # importable modules the writer needs
    write: Writer

    def missing(self) -> list[str]:
        return [m for m in self.needs if importlib.util.find_spec(m) is None]


@dataclass(frozen=True)
class Entry:
    name: str
    library: str
    what: str
    build_s: float


@dataclass
class Built:
    root: Path
    entries: list[Entry] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # name -> missing library
    failed: dict[str, str] = field(default_factory=dict)  # name -> the writer's exception

    def files(self, entry: Entry) -> list[Path]:
        """The files an entry wrote (itself, or everything inside its folder)."""
        path = self.root / entry.name
        if path.is_dir():
            return sorted(p for p in path.rglob("*") if p.is_file())
        return [path]

    def to_json(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "entries": [vars(e) for e in self.entries],
            "unavailable": self.unavailable,
            "failed": self.failed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Built:
        return cls(
            Path(data["root"]),
            [Entry(**e) for e in data["entries"]],
            dict(data["unavailable"]),
            dict(data["failed"]),
        )

    def all_files(self) -> list[Path]:
        return [p for e in self.entries for p in self.files(e)]


REGISTRY: list[Spec] = []


def writes(
    name: str, library: str, what: str, needs: tuple[str, ...] = ()
) -> Callable[[Writer], Writer]:
    """Register a writer for `name`; `needs` defaults to the library's module."""

    def register(writer: Writer) -> Writer:
        REGISTRY.append(Spec(name, library, what, needs or (library,), writer))
        return writer

    return register
