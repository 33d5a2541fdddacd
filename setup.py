"""Packaging beyond pyproject.toml: the published presets (``saved_models/``) ship inside the
package as ``tfmetarec/saved_models`` so ``from_preset("<name>")`` works after ``pip install``."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["tfmetarec", "tfmetarec.*"]), "tfmetarec.saved_models"],
    package_dir={"tfmetarec.saved_models": "saved_models"},
    package_data={"tfmetarec.saved_models": ["*/*.json", "*/*.keras", "*/*.md"]},
    include_package_data=False,
)
