"""Meta-learners: one API (adapt, score, meta_gradients) and a compiled training loop."""

from __future__ import annotations

from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.distribute import ClusterError, make_strategy, split_cpu
from tfmetarec.learners.baselines import ItemMean, ItemStatisticsLearner, Popularity
from tfmetarec.learners.encoder import TaskEncoder
from tfmetarec.learners.loop import MetaTrainer
from tfmetarec.learners.maml import FOMAML, MAML, MetaSGD
from tfmetarec.learners.metric import MatchingLearner, PrototypeLearner
from tfmetarec.learners.pretrain import Pretrain
from tfmetarec.learners.reptile import Reptile

_REGISTRY: dict[str, type[MetaLearner]] = {
    "maml": MAML,
    "fomaml": FOMAML,
    "meta_sgd": MetaSGD,
    "reptile": Reptile,
    "prototype": PrototypeLearner,
    "matching": MatchingLearner,
    "task_encoder": TaskEncoder,
    "pretrain": Pretrain,
    "popularity": Popularity,
    "item_mean": ItemMean,
}


def get(name: str) -> type[MetaLearner]:
    """The learner class registered under ``name`` (e.g. ``"maml"``)."""
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(f"Unknown learner {name!r}; available: {sorted(_REGISTRY)}.") from None


def available() -> list[str]:
    """Names of the registered learners."""
    return sorted(_REGISTRY)


__all__ = [
    "FOMAML",
    "MAML",
    "ClusterError",
    "ItemMean",
    "ItemStatisticsLearner",
    "MatchingLearner",
    "MetaLearner",
    "MetaSGD",
    "MetaTrainer",
    "Popularity",
    "Pretrain",
    "PrototypeLearner",
    "Reptile",
    "TaskEncoder",
    "available",
    "get",
    "make_strategy",
    "split_cpu",
]
