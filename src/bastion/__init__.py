"""bastion: security checks for the whole ML lifecycle.

    >>> import bastion
    >>> report = bastion.scan(["model.pt"])
    >>> obj = bastion.safe_load("model.safetensors")

`import bastion` is light: scanners and heavy frameworks load on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.findings import CheckError, Finding, Location, Report, Severity, Skip, TargetResult
from bastion.version import __version__

if TYPE_CHECKING:
    from bastion.config import Settings

__all__ = [
    "CheckError",
    "Finding",
    "Location",
    "Report",
    "Severity",
    "Skip",
    "TargetResult",
    "__version__",
    "safe_load",
    "scan",
]


def run_scan_api(
    paths: Sequence[str | PathLike[str]] | str | PathLike[str], settings: Settings | None = None
) -> Report:
    """Scan files or folders and return the Report (no verdict: see bastion.policy.evaluate).
    Also reachable as `bastion.scan(paths)`. Without `settings`, the built-in defaults apply:
    no file near the scanned paths can change them."""
    from bastion.config import Settings
    from bastion.project import scan_project

    items = [paths] if isinstance(paths, (str, PathLike)) else list(paths)
    return scan_project([Path(p) for p in items], settings or Settings())


def safe_load(path: str | PathLike[str], settings: Settings | None = None, **kwargs: Any) -> Any:
    """Load a pickle/joblib, PyTorch, NumPy or safetensors file only if its scan passes the
    policy, loading exactly the bytes that were scanned. Raises UnsafeArtifactError otherwise."""
    from bastion.scan.safe_load import safe_load as _safe_load

    return _safe_load(Path(path), settings, **kwargs)


scan = run_scan_api
