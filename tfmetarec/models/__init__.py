"""Rating models: Keras subclassed, serialisable, with a pure ``forward(params, features)``."""

from __future__ import annotations

from tfmetarec.models.base import MetaModel
from tfmetarec.models.cf import BiasedMF
from tfmetarec.models.content import ContentModel
from tfmetarec.models.hybrid import Hybrid
from tfmetarec.models.melu import MeLU
from tfmetarec.models.metaemb import MetaEmb, MetaEmbeddingTrainer
from tfmetarec.models.two_tower import TwoTower

_REGISTRY: dict[str, type[MetaModel]] = {"melu": MeLU}
_REGISTRY.update(cf=BiasedMF, content=ContentModel, hybrid=Hybrid, metaemb=MetaEmb, two_tower=TwoTower)


def get(name: str) -> type[MetaModel]:
    """The model class registered under ``name`` (e.g. ``"melu"``)."""
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; available: {sorted(_REGISTRY)}.") from None


def available() -> list[str]:
    """Names of the registered models."""
    return sorted(_REGISTRY)


__all__ = [
    "BiasedMF",
    "ContentModel",
    "Hybrid",
    "MeLU",
    "MetaEmb",
    "MetaEmbeddingTrainer",
    "MetaModel",
    "TwoTower",
    "available",
    "get",
]
