"""Typed settings. Precedence: command-line flag > BASTION_* environment > the policy file >
default.

The policy file is the *invoking* project's: `--policy FILE`, else `BASTION_POLICY`, else the
first bastion.toml (or pyproject.toml with [tool.bastion]) from the working directory upwards.
It is never looked up from the scanned paths: a downloaded model folder that ships its own
policy must not be able to waive its own findings. The library API (`bastion.scan`,
`safe_load`) uses the built-in defaults unless it is handed Settings."""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bastion.errors import ConfigError
from bastion.findings import Severity
from bastion.records import Checked, RecordError, field

MiB = 1024 * 1024
POLICY_ENV = "BASTION_POLICY"
POLICY_FILE_NAMES = ("bastion.toml", "pyproject.toml")
_RULE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*\Z")  # one id: no glob characters
# A waiver whose path glob matches every path of one of these sets would waive a rule everywhere.
_ANY_PATH_PROBES = (("model.pkl", ".hidden", "x"), ("a/b/c/model.pt", "x/y", "/abs/m.pkl"))

# name -> (minimum, meaning); every limit must be at least its minimum
_LIMIT_MINIMUMS = {
    "timeout_s": (0.1, "wall time per top-level file"),
    "memory_mb": (64, "address-space budget of a scan worker"),
    "max_depth": (1, "nesting of archives and nested pickles"),
    "max_members": (1, "members read from one archive"),
    "max_decompressed_mb": (1, "bytes inflated per top-level file"),
    "max_pickle_mb": (1, "size of one nested pickle analysed"),
    "max_metadata_mb": (1, "JSON headers, configs, GGUF metadata"),
    "max_files": (1, "files discovered under one root"),
}


class Limits(Checked):
    """Bounds on the work done for one file. Hitting one makes the file incomplete (never clean)."""

    timeout_s: float = 120.0
    memory_mb: int = 2048
    max_depth: int = 6
    max_members: int = 20_000
    max_decompressed_mb: int = 4096
    max_pickle_mb: int = 1024
    max_metadata_mb: int = 64
    max_files: int = 200_000

    def _validate(self) -> None:
        for name, (minimum, meaning) in _LIMIT_MINIMUMS.items():
            if getattr(self, name) < minimum:
                raise RecordError(name, f"must be at least {minimum} ({meaning})")

    @property
    def max_decompressed(self) -> int:
        return self.max_decompressed_mb * MiB

    @property
    def max_pickle(self) -> int:
        return self.max_pickle_mb * MiB

    @property
    def max_metadata(self) -> int:
        return self.max_metadata_mb * MiB


class WaiverSpec(Checked):
    """Accept findings of one rule under a path glob, for a reason, until a date. Wildcards are
    refused: a waiver names one rule id and a path glob that does not match every path."""

    rule: str
    path: str
    reason: str
    expires: dt.date

    def _validate(self) -> None:
        if not self.reason.strip():
            raise RecordError("reason", "a waiver needs a reason")
        if not _RULE_ID.match(self.rule):
            raise RecordError(
                "rule",
                f"a waiver names one rule id (like PKL003), not "
                f"{self.rule!r}: wildcard waivers are refused",
            )
        if any(
            all(fnmatch.fnmatchcase(probe, self.path) for probe in probes)
            for probes in _ANY_PATH_PROBES
        ):
            raise RecordError(
                "path",
                f"{self.path!r} matches every path: a waiver names the "
                "files it covers (e.g. 'models/vendor/*')",
            )


class SigstoreIdentity(Checked):
    """A keyless signer bastion trusts: certificate identity and OIDC issuer."""

    identity: str
    issuer: str


class SigningSettings(Checked):
    """Which signatures `bastion scan` trusts, and whether model artifacts must be signed.
    Paths are relative to the policy file."""

    public_keys: tuple[str, ...] = ()
    certificate_chains: tuple[str, ...] = ()
    identities: tuple[SigstoreIdentity, ...] = ()  # keyless Sigstore signers (needs network)
    require: bool = False

    def _validate(self) -> None:
        if self.require and not (self.public_keys or self.certificate_chains or self.identities):
            raise RecordError(
                "require",
                "require = true needs trusted signers "
                "(public_keys, certificate_chains or "
                "identities): without them no signature "
                "can be verified",
            )


class ProbeSettings(Checked):
    """The [probe] table: what `bastion probe` measures and the thresholds its findings judge.
    Shares are fractions in [0, 1]; budgets are in the probe spec's cost units (bastion/probe)."""

    min_robust_accuracy: float = 0.6  # accuracy left when declined rows may change (PRB002)
    max_flippable_share: float = 0.25  # declined rows flippable within the budget (PRB001)
    max_membership_auc: float = 0.6  # best membership-inference attack's ROC AUC (PRB010)
    max_extraction_fidelity: float = 0.9  # surrogate agreement within the query budget (PRB020)
    budgets: tuple[float, ...] = (0.25, 0.5, 1.0)  # evasion budgets; the largest is judged
    queries: int = 2000  # extraction: the attacker's query budget
    queries_per_row: int = 1000  # evasion: queries spent on one declined row at most
    max_rows: int = 200  # evasion: declined rows probed (a seeded sample beyond this)
    seed: int = 0

    def _validate(self) -> None:
        for name in (
            "min_robust_accuracy",
            "max_flippable_share",
            "max_membership_auc",
            "max_extraction_fidelity",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise RecordError(name, f"must be between 0 and 1, not {value}")
        if not self.budgets or any(not 0 < b < 1e6 for b in self.budgets):
            raise RecordError("budgets", "one or more positive costs (below 1e6)")
        for name, low in (("queries", 10), ("queries_per_row", 10), ("max_rows", 1)):
            if getattr(self, name) < low:
                raise RecordError(name, f"must be at least {low}")


GATE_REQUIREMENTS = ("scan", "signature", "data", "probe")


class GateSettings(Checked):
    """The [gate] table: what `bastion gate` requires of a model's evidence before release,
    and how old that evidence may be (bastion/lineage/gate.py). Expired waivers always fail."""

    require: tuple[str, ...] = GATE_REQUIREMENTS
    max_age_days: int = 30

    def _validate(self) -> None:
        unknown = [r for r in self.require if r not in GATE_REQUIREMENTS]
        if unknown:
            raise RecordError(
                "require", f"unknown requirement {unknown[0]!r}: {', '.join(GATE_REQUIREMENTS)}"
            )
        if not 1 <= self.max_age_days <= 3650:
            raise RecordError("max_age_days", "must be between 1 and 3650")


EXECUTORS = ("local", "ray")


def _cpu_count() -> int:
    return max(1, os.cpu_count() or 1)


class Settings(Checked):
    fail_on: Severity = Severity.MEDIUM
    strict: bool = False
    waivers: tuple[WaiverSpec, ...] = ()
    baseline: str | None = None
    workers: int = field(default_factory=_cpu_count)
    limits: Limits = field(default_factory=Limits)
    signing: SigningSettings = field(default_factory=SigningSettings)
    advisory_db: str | None = None  # offline OSV database for dependency checks in `scan`
    executor: str = "local"  # where files are scanned: "local" worker processes, or "ray"
    ray_address: str | None = None  # Ray cluster to use; None starts a local Ray instance
    # stricter treatments for kinds of gaps than bastion.coverage's defaults ([coverage])
    coverage: dict[str, str] = field(default_factory=dict)
    # the [data] table: DataOptions fields (datacheck/options.py), validated by the data checks
    data: dict[str, Any] = field(default_factory=dict)
    probe: ProbeSettings = field(default_factory=ProbeSettings)  # [probe]: bastion probe
    gate: GateSettings = field(default_factory=GateSettings)  # [gate]: bastion gate
    source: str | None = None  # file the settings came from

    @property
    def policy_name(self) -> str:
        """What the report and stderr name as the policy in use."""
        return self.source or "built-in defaults"

    def resolve(self, relative: str) -> Path:
        """A path from the policy file, relative to the file's folder."""
        base = Path(self.source).parent if self.source else Path(".")
        return base / relative

    def _validate(self) -> None:
        if self.workers < 1:
            raise RecordError("workers", "must be at least 1")
        if self.executor not in EXECUTORS:
            raise RecordError("executor", f"must be one of {', '.join(EXECUTORS)}")
        from bastion.coverage import check_overrides

        problem = check_overrides(self.coverage)
        if problem:
            raise RecordError("coverage", problem)


_ENV_KEYS = {
    "BASTION_FAIL_ON": "fail_on",
    "BASTION_STRICT": "strict",
    "BASTION_BASELINE": "baseline",
    "BASTION_WORKERS": "workers",
    "BASTION_EXECUTOR": "executor",
    "BASTION_RAY_ADDRESS": "ray_address",
}
_ENV_LIMIT_PREFIX = "BASTION_LIMIT_"


def _read_toml(path: Path, unless_missing: bytes | None = None) -> dict[str, Any]:
    """The parsed file; {} without parsing when `unless_missing` does not occur in it (a
    pyproject.toml that never mentions bastion has no [tool.bastion] table)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc.strerror}") from exc
    if unless_missing is not None and unless_missing not in raw:
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: not UTF-8 ({exc.reason})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def declares_policy(path: Path) -> bool:
    """Whether the file is a bastion policy: a bastion.toml, or a pyproject.toml with a
    [tool.bastion] table (an unreadable or broken one is not)."""
    if path.name == "bastion.toml":
        return True
    try:
        table = _read_toml(path, unless_missing=b"bastion").get("tool", {}).get("bastion")
    except ConfigError:
        return False
    return isinstance(table, dict)


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
            table = _read_toml(project, unless_missing=b"bastion").get("tool", {}).get("bastion")
            if isinstance(table, dict):
                return project, table
    return None


def _near(policy: Path, roots: Sequence[Path]) -> bool:
    """Whether a policy file shares a folder tree with the scanned content: the deepest folder
    holding both is anything but the filesystem root, the home folder or a folder above it.
    Inside, above, beside (`repo/scripts/bastion.toml` scanning `repo/models`) all count: a
    downloaded repository can put its policy anywhere the user might `cd` to. A policy in the
    home folder itself (or above) is never implicit: extracting a tarball in ~ can write one."""
    folder = policy.resolve().parent
    home = Path.home().resolve()
    broad = {Path(folder.anchor), home, *home.parents}
    if folder in broad:  # ~/bastion.toml: a tarball extracted in ~ can drop one there
        return bool(roots)
    for root in roots:
        common = Path(os.path.commonpath([folder, root.resolve()]))
        if common not in broad:
            return True
    return False


def load_settings(
    policy_file: Path | None = None,
    project_dir: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    scanned: Sequence[Path] = (),
) -> Settings:
    """Settings from the invoking project: `policy_file`, else the file named by
    BASTION_POLICY, else the policy found from `project_dir` (the working directory, never a
    scanned path) upwards; then environment and `overrides` on top. A policy found implicitly
    that shares a folder tree with the `scanned` paths (in, above or beside them) is refused:
    after `git clone …/model && cd model`, the model's repository is the working directory,
    and `bastion scan .` (or `bastion scan weights/`, or `cd scripts && bastion scan
    ../models`) must not let it choose its own policy. Such a policy is used only when named
    (`policy_file` or BASTION_POLICY); implicit discovery serves scans of content elsewhere
    (a download folder, a mounted registry) from the invoking project."""
    data: dict[str, Any] = {}
    source: str | None = None
    env = os.environ if environ is None else environ
    if policy_file is None and env.get(POLICY_ENV):
        policy_file = Path(env[POLICY_ENV])
        if not policy_file.is_file():
            raise ConfigError(f"{POLICY_ENV} names {policy_file}, which is not a file")
    if policy_file is not None:
        raw = _read_toml(policy_file)
        data = (
            raw.get("tool", {}).get("bastion", raw) if policy_file.name == "pyproject.toml" else raw
        )
        source = str(policy_file)
    elif project_dir is not None:
        found = find_config_file(project_dir)
        if found and _near(found[0], scanned):
            raise ConfigError(
                f"the policy {found[0]} is in, above or beside the scanned content, so it is "
                "not read implicitly: a downloaded model repository must not choose its own "
                "policy",
                hint=f"if it is your project's policy, name it: --policy {found[0]} (or "
                f"{POLICY_ENV}={found[0]}); otherwise run bastion from outside that "
                "repository",
            )
        if found:
            source, data = str(found[0]), dict(found[1])
    data = dict(data)
    for key, name in _ENV_KEYS.items():
        if key in env:
            data[name] = env[key]
    limits = dict(data.get("limits", {}))
    for key, value in env.items():
        if key.startswith(_ENV_LIMIT_PREFIX):
            limits[key[len(_ENV_LIMIT_PREFIX) :].lower()] = value
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
    except RecordError as exc:
        raise ConfigError(
            f"invalid settings{f' in {source}' if source else ''}: {exc}",
            hint="see docs/policy.md for the accepted keys",
        ) from exc
