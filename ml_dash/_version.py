"""The package's version: one place, read by setuptools (pyproject's dynamic version) and by the code."""

__version__ = "0.1.0"
