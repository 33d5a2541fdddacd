"""Meta-learners: one API (adapt, score, meta_gradients) and a compiled training loop.

The learner names live in :mod:`tfmetarec.registry`; :func:`create` builds one from its name
and its constructor's options (a named option set such as ``fomaml`` adds the options it fixes).
"""

from __future__ import annotations

from typing import Any

from tfmetarec import registry
from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.baselines import ItemMean, ItemStatisticsLearner, Popularity
from tfmetarec.learners.distribute import ClusterError, make_strategy, split_cpu
from tfmetarec.learners.encoder import TaskEncoder
from tfmetarec.learners.maml import MAML
from tfmetarec.learners.memory import MemoryAugmentedMAML
from tfmetarec.learners.metaemb import MetaEmbeddingLearner
from tfmetarec.learners.metric import MatchingLearner, PrototypeLearner
from tfmetarec.learners.pretrain import Pretrain
from tfmetarec.learners.reptile import Reptile
from tfmetarec.learners.trainer import MetaTrainer
from tfmetarec.models.base import MetaModel


def get(name: str) -> type:
    """The learner class registered under ``name`` (``registry.class_of("learner", name)``)."""
    return registry.class_of("learner", name)


def create(name: str, model: MetaModel, **options: Any) -> MetaLearner:
    """The learner ``name`` around ``model``: its class built with the options the name fixes
    and ``options`` (checked against the constructor's settings, naming any unknown one)."""
    entry = registry.entry("learner", name)
    keras_arguments = {k: options.pop(k) for k in ("name", "dtype", "trainable") if k in options}
    checked = registry.check("learner", entry.name, options)
    return get(entry.name)(model, **{**entry.fixed, **checked}, **keras_arguments)


def available() -> list[str]:
    """Names of the registered learners."""
    return sorted(registry.names("learner"))


__all__ = [
    "MAML",
    "ClusterError",
    "ItemMean",
    "ItemStatisticsLearner",
    "MatchingLearner",
    "MemoryAugmentedMAML",
    "MetaEmbeddingLearner",
    "MetaLearner",
    "MetaTrainer",
    "Popularity",
    "Pretrain",
    "PrototypeLearner",
    "Reptile",
    "TaskEncoder",
    "available",
    "create",
    "get",
    "make_strategy",
    "split_cpu",
]
