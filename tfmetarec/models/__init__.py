"""Rating models: Keras subclassed, serialisable, with a pure ``forward(params, features)``.

The model names live in :mod:`tfmetarec.registry`; :func:`get` returns a model's class.
"""

from __future__ import annotations

from tfmetarec import registry
from tfmetarec.models.base import MetaModel
from tfmetarec.models.cf import BiasedMF
from tfmetarec.models.content import ContentModel
from tfmetarec.models.hybrid import Hybrid
from tfmetarec.models.melu import MeLU
from tfmetarec.models.metaemb import MetaEmb
from tfmetarec.models.two_tower import TwoTower


def get(name: str) -> type:
    """The model class registered under ``name`` (``registry.class_of("model", name)``)."""
    return registry.class_of("model", name)


def available() -> list[str]:
    """Names of the registered models."""
    return sorted(registry.names("model"))


__all__ = [
    "BiasedMF",
    "ContentModel",
    "Hybrid",
    "MeLU",
    "MetaEmb",
    "MetaModel",
    "TwoTower",
    "available",
    "get",
]
