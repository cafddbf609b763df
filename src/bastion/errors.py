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


class DataInputError(InputError):
    """A data file that cannot be read as a table (ragged rows, bad encoding, mixed types, a row
    or a decompressed size past its bound). `row` is the 0-based data row (header excluded)
    where reading stopped and `line` the 1-based line of the file, when known; `kind` says what
    went wrong."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "malformed",
        row: int | None = None,
        line: int | None = None,
        column: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.row = row
        self.line = line
        self.column = column


class StoreError(BastionError):
    """The history store cannot be opened or read."""


class LimitExceeded(BastionError):
    """A resource bound was hit while reading hostile input."""


class UnsafeArtifactError(BastionError):
    """`safe_load` refused to load: the scan did not pass the policy."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message, hint="run `bastion scan` on the file for the full report")
        self.report = report


class PluginError(BastionError):
    """An installed plugin that cannot be loaded or does not have the plugin shape."""

    def __init__(self, plugin: str, problem: str) -> None:
        super().__init__(
            f"plugin {plugin} cannot be used: {problem}",
            hint="fix or uninstall the plugin's package (pip uninstall); bastion does not run "
            "with a plugin it cannot load, so a scan never silently loses a check",
        )
        self.plugin = plugin


class MissingExtra(BastionError):
    """An optional dependency is needed for this operation."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this needs the optional package '{package}'",
            hint=f"pip install 'bastion-mlsec[{extra}]'",
        )
        self.package = package
        self.extra = extra
