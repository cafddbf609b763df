"""Typed settings. Precedence: command-line flag > BASTION_* environment > bastion.toml or
[tool.bastion] in pyproject.toml (or --policy FILE) > default."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bastion.errors import ConfigError
from bastion.findings import Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MiB = 1024 * 1024


class Limits(BaseModel):
    """Bounds on the work done for one file. Hitting one makes the file incomplete (never clean)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_s: float = Field(120.0, gt=0, description="wall time per top-level file")
    memory_mb: int = Field(2048, ge=64, description="address-space budget of a scan worker")
    max_depth: int = Field(6, ge=1, description="nesting of archives and nested pickles")
    max_members: int = Field(20_000, ge=1, description="members read from one archive")
    max_decompressed_mb: int = Field(4096, ge=1, description="bytes inflated per top-level file")
    max_pickle_mb: int = Field(1024, ge=1, description="size of one pickle stream analysed")
    max_metadata_mb: int = Field(64, ge=1, description="JSON headers, configs, GGUF metadata")
    max_files: int = Field(200_000, ge=1, description="files discovered under one root")

    @property
    def max_decompressed(self) -> int:
        return self.max_decompressed_mb * MiB

    @property
    def max_pickle(self) -> int:
        return self.max_pickle_mb * MiB

    @property
    def max_metadata(self) -> int:
        return self.max_metadata_mb * MiB


class WaiverSpec(BaseModel):
    """Accept findings of one rule under a path glob, for a reason, until a date."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str
    path: str = "*"
    reason: str
    expires: dt.date

    @field_validator("reason")
    @classmethod
    def _reason_required(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a waiver needs a reason")
        return value


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fail_on: Severity = Severity.MEDIUM
    strict: bool = False
    waivers: tuple[WaiverSpec, ...] = ()
    baseline: str | None = None
    workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1)
    limits: Limits = Field(default_factory=Limits)
    source: str | None = Field(None, description="file the settings came from")


_ENV_KEYS = {"BASTION_FAIL_ON": "fail_on", "BASTION_STRICT": "strict",
             "BASTION_BASELINE": "baseline", "BASTION_WORKERS": "workers"}
_ENV_LIMIT_PREFIX = "BASTION_LIMIT_"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def find_config_file(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """bastion.toml, or pyproject.toml with [tool.bastion], in START or its parents."""
    start = start.resolve()
    folder = start if start.is_dir() else start.parent
    for candidate in (folder, *folder.parents):
        own = candidate / "bastion.toml"
        if own.is_file():
            return own, _read_toml(own)
        project = candidate / "pyproject.toml"
        if project.is_file():
            table = _read_toml(project).get("tool", {}).get("bastion")
            if isinstance(table, dict):
                return project, table
    return None


def load_settings(
    policy_file: Path | None = None,
    search_from: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    data: dict[str, Any] = {}
    source: str | None = None
    if policy_file is not None:
        raw = _read_toml(policy_file)
        data = raw.get("tool", {}).get("bastion", raw) if policy_file.name == "pyproject.toml" \
            else raw
        source = str(policy_file)
    elif search_from is not None:
        found = find_config_file(search_from)
        if found:
            source, data = str(found[0]), dict(found[1])
    data = dict(data)
    env = os.environ if environ is None else environ
    for key, field in _ENV_KEYS.items():
        if key in env:
            data[field] = env[key]
    limits = dict(data.get("limits", {}))
    for key, value in env.items():
        if key.startswith(_ENV_LIMIT_PREFIX):
            limits[key[len(_ENV_LIMIT_PREFIX):].lower()] = value
    if limits:
        data["limits"] = limits
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "limits":
            data["limits"] = {**data.get("limits", {}), **value}
        else:
            data[key] = value
    if "waivers" in data and isinstance(data["waivers"], list):
        data["waivers"] = tuple(data["waivers"])
    data["source"] = source
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid settings{f' in {source}' if source else ''}: {problems}",
            hint="see docs/policy.md for the accepted keys",
        ) from exc
