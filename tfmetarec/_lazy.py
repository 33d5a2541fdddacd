"""Public names of a subpackage imported on first use (so importing the package stays cheap)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps each public name to the module of
    the package that defines it (``{"FeatureEncoder": "features"}``). Only the package's own modules
    can be named, so a lazy name never crosses a layer."""
    bad = sorted(m for m in set(names.values()) if not m.isidentifier())
    if bad:
        raise ValueError(f"{package}: lazy names must come from its own modules, not {bad}.")

    def getattr_(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        importlib.import_module(package).__dict__[name] = value  # the next lookup skips this function
        return value

    def dir_() -> list[str]:
        return sorted({*vars(importlib.import_module(package)), *names})

    return getattr_, dir_
