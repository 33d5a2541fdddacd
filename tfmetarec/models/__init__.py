"""Rating models: Keras subclassed, serialisable, with a pure ``forward(params, features)``."""

from __future__ import annotations

from tfmetarec.models.base import MetaModel
from tfmetarec.models.melu import MeLU

_REGISTRY: dict[str, type[MetaModel]] = {"melu": MeLU}


def get(name: str) -> type[MetaModel]:
    """The model class registered under ``name`` (e.g. ``"melu"``)."""
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; available: {sorted(_REGISTRY)}.") from None


def available() -> list[str]:
    """Names of the registered models."""
    return sorted(_REGISTRY)


__all__ = ["MeLU", "MetaModel", "available", "get"]
