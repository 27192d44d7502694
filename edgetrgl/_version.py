"""The package version, in a module of its own: every layer may read it without importing the package."""

__version__ = "0.1.0"  # keep equal to pyproject.toml's
