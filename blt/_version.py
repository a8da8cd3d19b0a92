"""The package version: one place, read by pyproject.toml (statically), `blt.__version__` and model cards."""

__version__ = "0.1.0"
