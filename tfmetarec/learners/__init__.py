"""Meta-learners: one API (adapt, score, meta_gradients) and a compiled training loop."""

from __future__ import annotations

from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.loop import MetaTrainer
from tfmetarec.learners.maml import MAML
from tfmetarec.learners.pretrain import Pretrain

_REGISTRY: dict[str, type[MetaLearner]] = {"maml": MAML, "pretrain": Pretrain}


def get(name: str) -> type[MetaLearner]:
    """The learner class registered under ``name`` (e.g. ``"maml"``)."""
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(f"Unknown learner {name!r}; available: {sorted(_REGISTRY)}.") from None


def available() -> list[str]:
    """Names of the registered learners."""
    return sorted(_REGISTRY)


__all__ = ["MAML", "MetaLearner", "MetaTrainer", "Pretrain", "available", "get"]
