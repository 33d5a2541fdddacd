"""The library's version (one place; ``tfmetarec.__version__`` reads it)."""

__version__ = "0.1.0"
