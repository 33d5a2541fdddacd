"""What meta-training minimises on a task's query, as one settings object.

:class:`QueryLoss` is passed to a learner's constructor (``MAML(model,
query_loss=QueryLoss(ranking_weight=0.3))``), saved with it, and read by the loss code of
:mod:`tfmetarec.learners.losses`. It needs neither numpy nor TensorFlow, so configs and the
command line check it before anything heavy loads.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

RANKING_LOSSES = ("pairwise", "listwise")
"""``pairwise``: gain-weighted logistic loss over a task's ordered query pairs; ``listwise``:
softmax cross-entropy against the ratings' softmax (ListNet)."""


def _number(name: str, value: Any, low: float, high: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"query_loss.{name} must be a finite number, got {value!r}.")
    if value < low or (strict and value == low) or (high is not None and value > high):
        bound = f"{'>' if strict else '>='} {low:g}" + ("" if high is None else f" and <= {high:g}")
        raise ValueError(f"query_loss.{name} must be {bound}, got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class QueryLoss:
    """The meta-training loss of the scored query rows, averaged over the real tasks:

    ``(1 - ranking_weight) * MSE + ranking_weight * ranking`` (``ranking_loss``: one of
    :data:`RANKING_LOSSES`), plus ``retrieval_weight`` times an in-batch softmax over the
    batch's query items (each liked item must outscore the batch's others for its user;
    scores divided by ``retrieval_temperature``). ``retrieval_weight=None`` takes the
    model's own default (:attr:`tfmetarec.models.MetaModel.default_retrieval_weight`: 0.1
    for the two-tower model, 0 for the others). Adaptation (the inner loop) always fits
    ratings; only the outer objective changes.
    """

    ranking_weight: float = 0.0
    ranking_loss: str = "pairwise"
    retrieval_weight: float | None = None
    retrieval_temperature: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranking_weight", _number("ranking_weight", self.ranking_weight, 0.0, 1.0))
        if self.ranking_loss not in RANKING_LOSSES:
            raise ValueError(f"query_loss.ranking_loss must be one of {RANKING_LOSSES}, got {self.ranking_loss!r}.")
        if self.retrieval_weight is not None:
            object.__setattr__(self, "retrieval_weight", _number("retrieval_weight", self.retrieval_weight, 0.0))
        object.__setattr__(self, "retrieval_temperature",
                           _number("retrieval_temperature", self.retrieval_temperature, 0.0, strict=True))

    def with_retrieval_default(self, weight: float) -> QueryLoss:
        """This loss with an unset ``retrieval_weight`` replaced by ``weight``."""
        return self if self.retrieval_weight is not None else replace(self, retrieval_weight=float(weight))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> QueryLoss:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"query_loss takes no setting(s) {unknown}; its settings are {sorted(known)}.")
        return cls(**values)
