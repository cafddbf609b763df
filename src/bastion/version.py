"""The package version, in a module of its own so every layer can read it without importing
the public API (bastion/__init__.py sits above everything)."""

__version__ = "0.1.0"
