"""bastion's exceptions. Each carries a user-facing message and an optional hint.
The library raises them; only the CLI prints them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bastion.findings import Report


class BastionError(Exception):
    """Base class: a problem bastion can explain to its user."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(BastionError):
    """Bad arguments or options."""


class ConfigError(BastionError):
    """A policy or configuration file that cannot be used."""


class InputError(BastionError):
    """A path that does not exist or cannot be read."""


class StoreError(BastionError):
    """The history store cannot be opened or read."""


class LimitExceeded(BastionError):
    """A resource bound was hit while reading hostile input."""


class UnsafeArtifactError(BastionError):
    """`safe_load` refused to load: the scan did not pass the policy."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message, hint="run `bastion scan` on the file for the full report")
        self.report = report


class MissingExtra(BastionError):
    """An optional dependency is needed for this operation."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this needs the optional package '{package}'",
            hint=f"pip install 'bastion-mlsec[{extra}]'",
        )
        self.package = package
        self.extra = extra
