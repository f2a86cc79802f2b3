"""Everything is in pyproject.toml; this file lets older tooling build the package."""
from setuptools import setup

setup()
