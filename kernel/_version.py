"""The one version source of the distribution (``pyproject.toml`` reads it)."""

__version__ = "0.1.0"
